import type { createViolations } from "@corral/plumbing/errors.ts";

/** The part of the violation collector the field checkers need: they only ever add. */
export type Violations = Pick<ReturnType<typeof createViolations>, "add">;
