import { enumNames } from "@corral/plumbing/enum-names.ts";
import { create, fromJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RunSchema, RunStatus, Runtime, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { ArtifactState, RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { Phase } from "@corral/contract/corral/common/v1/run_event_pb.ts";

/** A row of `runs`, as raw SQL returns it. */
export interface RunRow {
  id: string;
  status: string;
  runtime: string;
  repository_url: string;
  spec: unknown;
  current_attempt: number;
  phase: string | null;
  current_step: string | null;
  cancel_requested_at: string | null;
  cancel_reason: string | null;
  cancel_grace_ms: number | null;
  reason: string | null;
  result: { commitSha?: string; branch?: string; changedFiles?: string[] } | null;
  artifact_state: string | null;
  created_at: string;
  updated_at: string;
  launched_at: string | null;
  attached_at: string | null;
  finished_at: string | null;
  /** W3C trace context of the run's SubmitRun span, when it was traced. */
  trace_parent: string | null;
  trace_state: string | null;
}

export const TERMINAL_STATUSES = ["completed", "failed", "cancelled"];

const RUN_STATUS = enumNames<RunStatus>(RunStatus);
const RUNTIME = enumNames<Runtime>(Runtime);
const PHASE = enumNames<Phase>(Phase);
const ARTIFACT_STATE = enumNames<ArtifactState>(ArtifactState);

export const runStatusName = RUN_STATUS.name;
export const runtimeName = RUNTIME.name;

const time = (value: string | null) => (value ? timestampFromDate(new Date(value)) : undefined);

/** The API's view of a run row. */
export function toRunMessage(row: RunRow): Run {
  return create(RunSchema, {
    id: row.id,
    spec: fromJson(RunSpecSchema, row.spec as never, { ignoreUnknownFields: true }),
    runtime: RUNTIME.value(row.runtime) ?? Runtime.UNSPECIFIED,
    status: RUN_STATUS.value(row.status) ?? RunStatus.UNSPECIFIED,
    phase: (row.phase && PHASE.value(row.phase)) || Phase.UNSPECIFIED,
    currentStep: row.current_step ?? "",
    attempt: row.current_attempt,
    createdAt: time(row.created_at),
    updatedAt: time(row.updated_at),
    launchedAt: time(row.launched_at),
    attachedAt: time(row.attached_at),
    finishedAt: time(row.finished_at),
    cancelRequested: row.cancel_requested_at !== null,
    cancelReason: row.cancel_reason ?? "",
    reason: row.reason ?? "",
    result: row.result ? { commitSha: row.result.commitSha ?? "", branch: row.result.branch ?? "", changedFiles: row.result.changedFiles ?? [] } : undefined,
    artifactState: (row.artifact_state && ARTIFACT_STATE.value(row.artifact_state)) || ArtifactState.UNSPECIFIED,
    // traceparent is "00-<trace id>-<span id>-<flags>".
    traceId: row.trace_parent?.split("-")[1] ?? "",
  });
}
