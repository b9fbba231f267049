/** Size as stored and sent: UTF-8 bytes, not UTF-16 code units. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Length in characters (code points), as a person counts them. */
export function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

const controlCharacter = /\p{Cc}/u;
const controlCharacterOrWhitespace = /[\p{Cc}\s]/u;
// Commands and messages are multi-line text; tab and line breaks are part of that.
const controlCharacterExceptLineBreaks = /(?![\t\n\r])\p{Cc}/u;

export function hasControlCharacter(text: string): boolean {
  return controlCharacter.test(text);
}

export function hasControlCharacterOrWhitespace(text: string): boolean {
  return controlCharacterOrWhitespace.test(text);
}

export function hasControlCharacterExceptLineBreaks(text: string): boolean {
  return controlCharacterExceptLineBreaks.test(text);
}

/** Durations in messages, as people write them: "24h", "5m", "1500ms". */
export function formatMs(ms: number): string {
  const units: [string, number][] = [["h", 3_600_000], ["m", 60_000], ["s", 1000]];
  for (const [unit, size] of units) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

