import { durationMs, type Duration } from "@bufbuild/protobuf/wkt";
import { CompletionStatus, type RunSpec } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { LogStream, Phase, StepKind, StepOutcome } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import type { PipelinePhase, PipelineResult, PipelineSpec, PipelineStepKind, PipelineStepOutcome } from "./run-pipeline.ts";
import type { OutputStream } from "./run-step.ts";

/**
 * The resolved `RunSpec` of an assignment as the pipeline's plain input. The scheduler
 * resolves defaults before launch; the few that the proto defines in terms of other fields
 * (branch, a validation step's timeout, the commit message) are applied here too, so a
 * half-resolved spec still runs as documented. Missing budgets are an error, not a guess.
 */
export function pipelineSpecFromRunSpec(spec: RunSpec, runId: string): PipelineSpec {
  const required = (name: string, value: Duration | undefined) => {
    if (!value) throw new Error(`the assignment's spec has no timeouts.${name}`);
    return durationMs(value);
  };
  const stepMs = required("step", spec.timeouts?.step);
  return {
    repositoryUrl: spec.repositoryUrl,
    baseRef: spec.baseRef,
    branch: spec.branch || `corral/${runId}`,
    agent: { commandTemplate: spec.agent?.commandTemplate ?? "", prompt: spec.agent?.prompt ?? "" },
    validationSteps: spec.validationSteps.map((step) => ({
      name: step.name,
      command: step.command,
      timeoutMs: step.timeout ? durationMs(step.timeout) : stepMs,
    })),
    timeouts: { stepMs, cloneMs: required("clone", spec.timeouts?.clone), graceMs: required("grace", spec.timeouts?.grace) },
    commit: {
      authorName: spec.commit?.authorName ?? "",
      authorEmail: spec.commit?.authorEmail ?? "",
      message: spec.commit?.message || firstLine(spec.agent?.prompt ?? "") || `Corral run ${runId}`,
    },
    env: { ...spec.env },
  };
}

export const PHASE_TO_PROTO: Readonly<Record<PipelinePhase, Phase>> = {
  preparing: Phase.PREPARING,
  cloning: Phase.CLONING,
  agent: Phase.AGENT,
  validating: Phase.VALIDATING,
  committing: Phase.COMMITTING,
  pushing: Phase.PUSHING,
};

export const STEP_KIND_TO_PROTO: Readonly<Record<PipelineStepKind, StepKind>> = {
  clone: StepKind.CLONE,
  agent: StepKind.AGENT,
  validation: StepKind.VALIDATION,
  commit: StepKind.COMMIT,
  push: StepKind.PUSH,
};

export const STEP_OUTCOME_TO_PROTO: Readonly<Record<PipelineStepOutcome, StepOutcome>> = {
  succeeded: StepOutcome.SUCCEEDED,
  failed: StepOutcome.FAILED,
  timed_out: StepOutcome.TIMED_OUT,
  cancelled: StepOutcome.CANCELLED,
  skipped: StepOutcome.SKIPPED,
};

export const LOG_STREAM_TO_PROTO: Readonly<Record<OutputStream, LogStream>> = {
  stdout: LogStream.STDOUT,
  stderr: LogStream.STDERR,
};

export const STATUS_TO_PROTO: Readonly<Record<PipelineResult["status"], CompletionStatus>> = {
  succeeded: CompletionStatus.SUCCEEDED,
  failed: CompletionStatus.FAILED,
  cancelled: CompletionStatus.CANCELLED,
};

function firstLine(text: string): string {
  return text.trim().split("\n", 1)[0]!.trim().slice(0, 72);
}
