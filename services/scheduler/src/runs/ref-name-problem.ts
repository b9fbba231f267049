import { submitRunLimits } from "./submit-run-limits.ts";
import { utf8Bytes } from "./text-checks.ts";

/**
 * Why `name` is not usable as a git ref name, or undefined when it is.
 *
 * The rules are those of `git check-ref-format --allow-onelevel` (one-level names such as
 * "main" are what people pass), plus two of our own: no leading "-", because the agent
 * passes the name to git commands where it would be read as an option, and a byte limit,
 * because refs are files under .git. Every full 40- or 64-digit object id passes too, so
 * the same check serves base refs that are commits.
 */
export function refNameProblem(name: string): string | undefined {
  if (name === "") return "must not be empty";
  if (utf8Bytes(name) > submitRunLimits.refNameBytes) return `must be at most ${submitRunLimits.refNameBytes} bytes`;
  // git refuses bytes below 0x20 and DEL; space is listed separately in its rules.
  if (/[\x00-\x20\x7f]/.test(name)) return "must not contain spaces or control characters";
  if (/[~^:?*[\\]/.test(name)) return "must not contain any of ~ ^ : ? * [ \\";
  if (name.startsWith("-")) return "must not start with '-'";
  if (name.includes("..")) return "must not contain '..'";
  if (name.includes("@{")) return "must not contain '@{'";
  if (name === "@") return "must not be '@'";
  if (name.startsWith("/") || name.endsWith("/") || name.includes("//")) {
    return "must not start or end with '/' or contain '//'";
  }
  if (name.endsWith(".")) return "must not end with '.'";
  const components = name.split("/");
  if (components.some((c) => c.startsWith("."))) return "no '/'-separated part may start with '.'";
  if (components.some((c) => c.endsWith(".lock"))) return "no '/'-separated part may end with '.lock'";
  return undefined;
}
