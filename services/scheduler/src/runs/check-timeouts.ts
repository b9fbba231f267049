import type { Duration } from "@bufbuild/protobuf/wkt";
import type { Timeouts } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { positiveDurationMs } from "./duration-ms.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import { formatMs } from "./text-checks.ts";
import type { ResolvedTimeouts } from "./validated-submission.ts";
import type { Violations } from "./violations.ts";

/**
 * Resolves spec.timeouts against the defaults.
 *
 * A value the client sets is checked against the run budget and refused when it does not
 * fit. A default is clamped to the run budget instead: a client that shortens the run did
 * not ask for its default step budget to be refused. `runBoundMs` is what every other
 * budget (validation steps included) is checked against.
 */
export function checkTimeouts(
  timeouts: Timeouts | undefined,
  defaults: Readonly<ResolvedTimeouts>,
  violations: Violations,
): { resolved: ResolvedTimeouts; runBoundMs: number } {
  const givenRunMs = readTimeout(timeouts?.run, "spec.timeouts.run", submitRunLimits.runTimeoutMs, violations);
  const runMs = givenRunMs ?? defaults.runMs;
  // When the run timeout itself was refused, bound the others by the largest run allowed,
  // so that one mistake is reported once rather than again on every other timeout.
  const runBound = timeouts?.run !== undefined && givenRunMs === undefined ? submitRunLimits.runTimeoutMs : runMs;
  const withinRun = (value: Duration | undefined, field: string, fallback: number): number =>
    readTimeout(value, field, runBound, violations, "the run timeout") ?? Math.min(fallback, runMs);
  const resolved = {
    runMs,
    stepMs: withinRun(timeouts?.step, "spec.timeouts.step", defaults.stepMs),
    cloneMs: withinRun(timeouts?.clone, "spec.timeouts.clone", defaults.cloneMs),
    graceMs: readTimeout(timeouts?.grace, "spec.timeouts.grace", submitRunLimits.graceMs, violations) ?? defaults.graceMs,
  };
  return { resolved, runBoundMs: runBound };
}

/**
 * A set timeout in ms, or undefined when it is unset or bad (then a violation names it).
 * `maxName` names the bound when it is another field rather than a fixed limit.
 */
export function readTimeout(
  value: Duration | undefined,
  field: string,
  maxMs: number,
  violations: Violations,
  maxName?: string,
): number | undefined {
  if (value === undefined) return undefined;
  const reading = positiveDurationMs(value);
  if ("problem" in reading) {
    violations.add(field, reading.problem);
    return undefined;
  }
  if (reading.ms > maxMs) {
    violations.add(field, `must be at most ${maxName === undefined ? formatMs(maxMs) : `${maxName} (${formatMs(maxMs)})`}`);
    return undefined;
  }
  return reading.ms;
}
