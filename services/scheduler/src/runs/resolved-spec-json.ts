import { create, toJson, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import type { ResolvedRunSpec } from "./validated-submission.ts";

/**
 * The resolved spec as protobuf JSON: the one stored form, which GetRun returns and the
 * control plane hands to the agent, so every reader agrees on every default.
 */
export function resolvedSpecJson(spec: ResolvedRunSpec): JsonValue {
  return toJson(
    RunSpecSchema,
    create(RunSpecSchema, {
      repositoryUrl: spec.repositoryUrl,
      baseRef: spec.baseRef,
      branch: spec.branch,
      agent: spec.agent,
      validationSteps: spec.validationSteps.map((step) => ({ name: step.name, command: step.command, timeout: durationFromMs(step.timeoutMs) })),
      timeouts: {
        run: durationFromMs(spec.timeouts.runMs),
        step: durationFromMs(spec.timeouts.stepMs),
        clone: durationFromMs(spec.timeouts.cloneMs),
        grace: durationFromMs(spec.timeouts.graceMs),
      },
      limits: {
        cpuMillis: spec.limits.cpuMillis ?? 0,
        memoryBytes: BigInt(spec.limits.memoryBytes ?? 0),
        pids: spec.limits.pids ?? 0,
        diskBytes: BigInt(spec.limits.diskBytes ?? 0),
      },
      artifactGlobs: spec.artifactGlobs,
      commit: spec.commit,
      env: spec.env,
      labels: spec.labels,
    }),
  );
}
