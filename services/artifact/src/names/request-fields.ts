import type { createViolations } from "@corral/plumbing/errors.ts";
import { artifactNameProblem, MAX_NAME_BYTES } from "./artifact-name-problem.ts";

type Violations = ReturnType<typeof createViolations>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CONTROL = /[\p{Cc}\u2028\u2029]/u;

/** A uuid field, lowercased as PostgreSQL prints uuids; records a violation when it is not one. */
export function uuidField(violations: Violations, field: string, value: string): string {
  if (!UUID.test(value)) violations.add(field, value === "" ? "is required" : "must be a uuid");
  return value.toLowerCase();
}

export function nameField(violations: Violations, field: string, value: string): void {
  const problem = artifactNameProblem(value);
  if (problem) violations.add(field, problem);
}

/** A name prefix for listing: any start of a valid name, so only length and controls are checked. */
export function prefixField(violations: Violations, field: string, value: string): void {
  if (Buffer.byteLength(value, "utf8") > MAX_NAME_BYTES) violations.add(field, `must be at most ${MAX_NAME_BYTES} bytes of UTF-8`);
  else if (CONTROL.test(value) || !value.isWellFormed()) violations.add(field, "must not contain control characters");
}

/** A media type such as "text/plain; charset=utf-8"; empty means application/octet-stream. */
export function contentTypeField(violations: Violations, field: string, value: string): string {
  if (value === "") return "application/octet-stream";
  if (value.length > 255 || !/^[\w.+-]+\/[\w.+-]+(\s*;\s*[\w.+-]+=("[^"\p{Cc}]*"|[\w.+-]+))*$/u.test(value)) {
    violations.add(field, 'must be a media type such as "text/plain; charset=utf-8", at most 255 characters');
  }
  return value;
}

/** A lowercase hex sha256; uppercase is accepted and lowered. */
export function sha256Field(violations: Violations, field: string, value: string): string {
  if (!/^[0-9a-f]{64}$/i.test(value)) violations.add(field, "must be 64 hexadecimal digits (a sha256)");
  return value.toLowerCase();
}
