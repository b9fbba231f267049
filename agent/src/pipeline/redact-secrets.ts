/** Rewrites one output stream so that none of the secrets passes through, even split across chunks. */
export interface SecretRedactor {
  /** The bytes that are safe to pass on now; a possible start of a secret is held back. */
  write(data: Uint8Array): Uint8Array;
  /** What was held back, at the end of the stream. */
  end(): Uint8Array;
}

export const REDACTED = "[redacted]";

/**
 * A redactor for one stream. Bytes that could be the beginning of a secret are held until the
 * next chunk decides, so a token printed across two reads is still caught; nothing else is
 * delayed.
 */
export function createSecretRedactor(secrets: readonly string[]): SecretRedactor {
  const needles = [...new Set(secrets.filter((secret) => secret.length > 0))]
    .map((secret) => Buffer.from(secret))
    .sort((a, b) => b.length - a.length);
  const replacement = Buffer.from(REDACTED);
  let pending: Buffer = Buffer.alloc(0);

  return {
    write(data) {
      if (needles.length === 0) return data;
      const buffer = Buffer.concat([pending, data]);
      const parts: Buffer[] = [];
      let position = 0;
      for (;;) {
        const match = firstMatch(buffer, position, needles);
        if (!match) break;
        parts.push(buffer.subarray(position, match.index), replacement);
        position = match.index + match.length;
      }
      const hold = heldBackLength(buffer.subarray(position), needles);
      parts.push(buffer.subarray(position, buffer.length - hold));
      pending = Buffer.from(buffer.subarray(buffer.length - hold));
      return Buffer.concat(parts);
    },
    end() {
      const rest = pending;
      pending = Buffer.alloc(0);
      return rest;
    },
  };
}

function firstMatch(buffer: Buffer, from: number, needles: readonly Buffer[]): { index: number; length: number } | undefined {
  let best: { index: number; length: number } | undefined;
  for (const needle of needles) {
    const index = buffer.indexOf(needle, from);
    // Needles are sorted longest first, so on a tie the longer secret wins.
    if (index !== -1 && (!best || index < best.index)) best = { index, length: needle.length };
  }
  return best;
}

/** Length of the longest tail of `tail` that a secret starts with. */
function heldBackLength(tail: Buffer, needles: readonly Buffer[]): number {
  const longest = Math.min(tail.length, Math.max(...needles.map((needle) => needle.length - 1)));
  for (let length = longest; length > 0; length--) {
    const suffix = tail.subarray(tail.length - length);
    if (needles.some((needle) => needle.length > length && needle.subarray(0, length).equals(suffix))) return length;
  }
  return 0;
}
