/** Longest artifact name, in UTF-8 bytes (the contract's limit). */
export const MAX_NAME_BYTES = 512;

// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: nothing a name needs,
// and each can forge lines in logs and terminals that print names.
const CONTROL = /[\p{Cc}\u2028\u2029]/u;

/**
 * Why a name cannot be an artifact name, or undefined when it can. A name is a relative,
 * normalised, "/"-separated path, such as "logs/run.log". The blob store never derives a path from
 * it (blobs are stored by digest); these rules protect whoever later writes artifacts to a disk by
 * name (`corral artifacts` downloads), and keep one spelling per file ("a/./b" is not "a/b").
 */
export function artifactNameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (!name.isWellFormed()) return "must be valid Unicode";
  if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) return `must be at most ${MAX_NAME_BYTES} bytes of UTF-8`;
  if (CONTROL.test(name)) return "must not contain control characters";
  if (name.includes("\\")) return 'must use "/" as the separator, not "\\"';
  if (name.startsWith("/")) return "must be a relative path, not start with /";
  if (/^[A-Za-z]:/.test(name)) return "must be a relative path, not start with a drive letter";
  for (const segment of name.split("/")) {
    if (segment === "") return "must not contain empty segments (// or a trailing /)";
    if (segment === "..") return 'must not contain ".." segments';
    if (segment === ".") return 'must not contain "." segments';
  }
  return undefined;
}
