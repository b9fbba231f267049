import type { ResourceLimits } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import type { ResolvedLimits } from "./validated-submission.ts";
import type { Violations } from "./violations.ts";

const fields = [
  ["cpuMillis", "cpu_millis"],
  ["memoryBytes", "memory_bytes"],
  ["pids", "pids"],
  ["diskBytes", "disk_bytes"],
] as const;

/**
 * Checks spec.limits. Zero means "the runtime's default" and stays absent from the result;
 * anything else must lie within the bounds, so that a typo (bytes for MiB) fails at submit
 * time instead of as an unschedulable sandbox.
 */
export function checkLimits(limits: ResourceLimits | undefined, violations: Violations): ResolvedLimits {
  const resolved: ResolvedLimits = {};
  for (const [key, protoName] of fields) {
    const value = BigInt(limits?.[key] ?? 0);
    if (value === 0n) continue;
    const { min, max } = submitRunLimits[key];
    if (value < BigInt(min) || value > BigInt(max)) {
      violations.add(`spec.limits.${protoName}`, `must be 0 (the runtime's default) or between ${min} and ${max}`);
      continue;
    }
    resolved[key] = Number(value);
  }
  return resolved;
}
