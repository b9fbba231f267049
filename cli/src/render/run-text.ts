import { enumNames } from "@corral/plumbing/enum-names.ts";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Phase, StepOutcome, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { ArtifactState } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { RunStatus, Runtime, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";

const nameOf = (e: Record<string, string | number>, value: number) => enumNames<number>(e).name(value) ?? String(value);

export const statusText = (status: RunStatus) => nameOf(RunStatus, status);
export const runtimeText = (runtime: Runtime) => nameOf(Runtime, runtime);

export function ago(ts: Timestamp | undefined, now = Date.now()): string {
  if (!ts) return "-";
  return `${duration(now - timestampDate(ts).getTime())} ago`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

/** Several lines describing a run, for `corral get`. */
export function runDetails(run: Run): string {
  const lines = [
    `run        ${run.id}`,
    `status     ${statusText(run.status)}${run.cancelRequested && run.status !== RunStatus.CANCELLED ? " (cancel requested)" : ""}`,
    `repository ${run.spec?.repositoryUrl ?? ""} @ ${run.spec?.baseRef ?? ""}`,
    `runtime    ${runtimeText(run.runtime)}`,
    `attempt    ${run.attempt}`,
    `created    ${ago(run.createdAt)}`,
  ];
  if (run.phase) lines.push(`phase      ${nameOf(Phase, run.phase)}${run.currentStep ? `, step ${run.currentStep}` : ""}`);
  if (run.finishedAt && run.createdAt) lines.push(`took       ${duration(timestampDate(run.finishedAt).getTime() - timestampDate(run.createdAt).getTime())}`);
  if (run.result?.branch) lines.push(`branch     ${run.result.branch}`, `commit     ${run.result.commitSha}`);
  if (run.result?.changedFiles.length) lines.push(`changed    ${run.result.changedFiles.join(", ")}`);
  // Set once the agent has reported it: whether `corral artifacts` has everything.
  if (run.artifactState) lines.push(`artifacts  ${nameOf(ArtifactState, run.artifactState).toLowerCase()}`);
  if (run.reason) lines.push(`reason     ${run.reason}`);
  // Where the run's spans are: search this id in Jaeger (or whatever receives the traces).
  if (run.traceId) lines.push(`trace      ${run.traceId}`);
  return lines.join("\n");
}

/** One line for an event, or undefined for events not worth a line (log chunks are handled apart). */
export function eventLine(event: RunEvent): string | undefined {
  const p = event.payload;
  switch (p.case) {
    case "runStarted":
      return `agent ${p.value.agentVersion} started on ${p.value.hostname}`;
    case "phaseChanged":
      return `phase: ${nameOf(Phase, p.value.phase)}`;
    case "stepStarted":
      return `▶ ${p.value.name}`;
    case "stepFinished": {
      const took = p.value.duration ? duration(Number(p.value.duration.seconds) * 1000 + p.value.duration.nanos / 1e6) : "";
      const mark = p.value.outcome === StepOutcome.SUCCEEDED ? "✔" : p.value.outcome === StepOutcome.SKIPPED ? "–" : "✖";
      const detail = p.value.outcome === StepOutcome.SUCCEEDED ? took : [nameOf(StepOutcome, p.value.outcome), p.value.message, took].filter(Boolean).join(", ");
      return `${mark} ${p.value.name} (${detail})`;
    }
    case "progress":
      return `… ${p.value.message}${p.value.percent !== undefined ? ` (${p.value.percent}%)` : ""}`;
    case "warning":
      return `! ${p.value.message}`;
    case "cancellationObserved":
      return `cancelling: ${p.value.reason}`;
    default:
      return undefined;
  }
}
