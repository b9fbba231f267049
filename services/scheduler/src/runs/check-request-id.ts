import { submitRunLimits } from "./submit-run-limits.ts";
import { characterCount } from "./text-checks.ts";
import type { Violations } from "./violations.ts";

// Letters, marks, digits, punctuation and symbols: no spaces, controls or invisible characters,
// since the key is compared byte for byte and a look-alike would silently miss.
const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$/u;

/** The idempotency key, or undefined when none was sent. */
export function checkRequestId(requestId: string, violations: Violations): string | undefined {
  if (requestId === "") return undefined;
  if (characterCount(requestId) > submitRunLimits.requestIdLength) {
    violations.add("request_id", `must be at most ${submitRunLimits.requestIdLength} characters`);
  } else if (!printable.test(requestId)) {
    violations.add("request_id", "must be printable characters without spaces");
  }
  return requestId;
}
