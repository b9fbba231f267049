// Long keys are cut in field paths so that a violation stays readable.
const shownKeyLength = 64;

/** Field path of one map entry, such as spec.env["PATH"]; the key is quoted and escaped. */
export function mapEntryField(mapField: string, key: string): string {
  const shown = [...key].length > shownKeyLength ? `${[...key].slice(0, shownKeyLength).join("")}…` : key;
  return `${mapField}[${JSON.stringify(shown)}]`;
}
