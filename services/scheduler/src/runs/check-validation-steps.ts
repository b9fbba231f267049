import type { ValidationStep } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { readTimeout } from "./check-timeouts.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import { hasControlCharacterExceptLineBreaks, utf8Bytes } from "./text-checks.ts";
import type { ResolvedValidationStep } from "./validated-submission.ts";
import type { Violations } from "./violations.ts";

/** Names of the steps every run has; a validation step must not pass for one of them. */
export const builtInStepNames: readonly string[] = ["clone", "agent", "commit", "push"];

const stepName = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Checks spec.validation_steps and resolves each step's timeout (unset takes the step
 * timeout). Names are compared case-insensitively, because they become log artifact names
 * and a case-insensitive file system would merge "Test" and "test".
 */
export function checkValidationSteps(
  steps: readonly ValidationStep[],
  timeouts: { stepMs: number; runBoundMs: number },
  violations: Violations,
): ResolvedValidationStep[] {
  if (steps.length > submitRunLimits.validationSteps) {
    violations.add("spec.validation_steps", `must have at most ${submitRunLimits.validationSteps} steps`);
  }
  const firstIndexByName = new Map<string, number>();
  return steps.map((step, index) => {
    const field = (name: string) => `spec.validation_steps[${index}].${name}`;
    const problem = stepNameProblem(step.name);
    if (problem !== undefined) {
      violations.add(field("name"), problem);
    } else {
      const key = step.name.toLowerCase();
      const first = firstIndexByName.get(key);
      if (first !== undefined) violations.add(field("name"), `duplicates spec.validation_steps[${first}].name`);
      else firstIndexByName.set(key, index);
    }
    if (step.command.trim() === "") violations.add(field("command"), "is required");
    else if (utf8Bytes(step.command) > submitRunLimits.stepCommandBytes) {
      violations.add(field("command"), `must be at most ${submitRunLimits.stepCommandBytes} bytes`);
    } else if (hasControlCharacterExceptLineBreaks(step.command)) {
      violations.add(field("command"), "must not contain control characters other than tab and line breaks");
    }
    const timeoutMs = readTimeout(step.timeout, field("timeout"), timeouts.runBoundMs, violations, "the run timeout");
    return { name: step.name, command: step.command, timeoutMs: timeoutMs ?? timeouts.stepMs };
  });
}

function stepNameProblem(name: string): string | undefined {
  if (name === "") return "is required";
  if (!stepName.test(name)) return "must be 1 to 64 letters, digits, '.', '_' or '-'";
  // A name made of dots, or starting with one, is a hidden or parent path once it names a log file.
  if (name.startsWith(".")) return "must not start with '.'";
  if (builtInStepNames.includes(name.toLowerCase())) {
    return `must not be the name of a built-in step (${builtInStepNames.join(", ")})`;
  }
  return undefined;
}
