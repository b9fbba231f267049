import type { ArtifactState } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import type { Assignment } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import type { EventPayload } from "../session/outbox.ts";
import type { OutputEvent, PipelineResult } from "./pipeline-port.ts";

/** One attempt's artifacts: the progressive run log and, at the end, the files. */
export interface AttemptArtifacts {
  /** Step output, redacted: the very bytes that also go up as log.chunk events. Must not throw. */
  output(chunk: OutputEvent): void;
  /** A step ended: its open lines are written and the log is sent. Must not throw. */
  stepFinished(step: string): void;
  /**
   * The pipeline ended: uploads the files, finishes the run log, and says how it went.
   * Bounded in time; never rejects (an artifact service that is down fails artifacts, not runs).
   */
  finish(outcome: { status: PipelineResult["status"]; baseCommit?: string }): Promise<ArtifactState>;
}

export interface ArtifactsContext {
  assignment: Assignment;
  workDir: string;
  /** Queues a run event (run.artifact_status, run.warning). */
  emit(payload: EventPayload): void;
  logger: Logger;
}

/**
 * What the attempt runner needs for artifacts: `attemptArtifacts` of agent/src/artifacts, or
 * nothing (tests of the session alone), in which case the completion reports no artifact state.
 */
export type ArtifactsPort = (context: ArtifactsContext) => AttemptArtifacts;
