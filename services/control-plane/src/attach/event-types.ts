import type { RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";

/** Canonical event type names, as stored and as documented on each payload message. */
export const EVENT_TYPES: Record<NonNullable<RunEvent["payload"]["case"]>, string> = {
  runStarted: "run.started",
  phaseChanged: "run.phase_changed",
  progress: "run.progress",
  warning: "run.warning",
  artifactStatus: "run.artifact_status",
  cancellationObserved: "run.cancellation_observed",
  completionAttempted: "run.completion_attempted",
  stepStarted: "step.started",
  stepFinished: "step.finished",
  logChunk: "log.chunk",
};
