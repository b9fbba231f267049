import { mapEntryField } from "./map-entry-field.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import { utf8Bytes } from "./text-checks.ts";
import type { Violations } from "./violations.ts";

const envKey = /^[A-Za-z_][A-Za-z0-9_]*$/;
// CORRAL_* is how the scheduler talks to the agent; GIT_* would redirect the agent's own git
// (GIT_SSH_COMMAND, GIT_ASKPASS, GIT_DIR), which holds the run's push credential.
const reservedPrefixes = ["CORRAL_", "GIT_"];

/** Checks spec.env: POSIX-style names, no reserved prefix, values execve can pass. */
export function checkEnv(env: Readonly<Record<string, string>>, violations: Violations): Record<string, string> {
  const entries = Object.entries(env);
  let totalBytes = 0;
  for (const [key, value] of entries) {
    totalBytes += utf8Bytes(key) + utf8Bytes(value);
    const field = mapEntryField("spec.env", key);
    const keyProblem = envKeyProblem(key);
    if (keyProblem !== undefined) violations.add(field, keyProblem);
    if (utf8Bytes(value) > submitRunLimits.envValueBytes) violations.add(field, `value must be at most ${submitRunLimits.envValueBytes} bytes`);
    else if (value.includes("\0")) violations.add(field, "value must not contain NUL characters");
  }
  if (totalBytes > submitRunLimits.envTotalBytes) {
    violations.add("spec.env", `names and values together must be at most ${submitRunLimits.envTotalBytes} bytes`);
  }
  // fromEntries defines own properties, so a key such as "__proto__" is kept, not swallowed.
  return Object.fromEntries(entries);
}

function envKeyProblem(key: string): string | undefined {
  if (key.length > submitRunLimits.envKeyLength) return `name must be at most ${submitRunLimits.envKeyLength} characters`;
  if (!envKey.test(key)) return "name must be letters, digits and '_', not starting with a digit";
  // Compared case-insensitively: no reason to allow "git_dir" while refusing "GIT_DIR".
  const prefix = reservedPrefixes.find((p) => key.toUpperCase().startsWith(p));
  if (prefix !== undefined) return `name must not start with ${prefix} (reserved)`;
  return undefined;
}
