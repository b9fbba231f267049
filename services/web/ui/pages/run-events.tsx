import type { RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { CompletionStatus } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { ArtifactUploadState } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { durationMs, formatBytes, formatDuration, phaseName, STEP_OUTCOMES } from "../format.ts";
import type { WatchPosition } from "../live/follow-run.ts";
import type { EventRow, RunModel } from "../live/run-model.ts";
import { Component } from "preact";

const UPLOAD_STATES: Record<ArtifactUploadState, string> = {
  [ArtifactUploadState.UNSPECIFIED]: "?",
  [ArtifactUploadState.UPLOADING]: "uploading",
  [ArtifactUploadState.UPLOADED]: "uploaded",
  [ArtifactUploadState.FAILED]: "failed",
  [ArtifactUploadState.SKIPPED]: "skipped",
};
const COMPLETIONS: Record<CompletionStatus, string> = {
  [CompletionStatus.UNSPECIFIED]: "?",
  [CompletionStatus.SUCCEEDED]: "succeeded",
  [CompletionStatus.FAILED]: "failed",
  [CompletionStatus.CANCELLED]: "cancelled",
};

/** An event's type as the contract names it, and what it says, in a line. */
function describe(event: RunEvent): [string, string] {
  const p = event.payload;
  switch (p.case) {
    case "runStarted":
      return ["run.started", `agent ${p.value.agentVersion} on ${p.value.hostname}, protocol ${p.value.protocolVersion}`];
    case "phaseChanged":
      return ["run.phase_changed", `${phaseName(p.value.previous)} → ${phaseName(p.value.phase)}`];
    case "progress":
      return ["run.progress", `${p.value.message}${p.value.percent !== undefined ? ` (${p.value.percent}%)` : ""}`];
    case "warning":
      return ["run.warning", `${p.value.code}: ${p.value.message}`];
    case "artifactStatus":
      return ["run.artifact_status", `${p.value.name} ${UPLOAD_STATES[p.value.state]}${p.value.sizeBytes ? `, ${formatBytes(p.value.sizeBytes)}` : ""}${p.value.message ? `: ${p.value.message}` : ""}`];
    case "cancellationObserved":
      return ["run.cancellation_observed", `${p.value.reason || "no reason"}; grace ${formatDuration(durationMs(p.value.grace))}`];
    case "completionAttempted":
      return ["run.completion_attempted", COMPLETIONS[p.value.status]];
    case "stepStarted":
      return ["step.started", p.value.name];
    case "stepFinished":
      return ["step.finished", `${p.value.name} ${STEP_OUTCOMES[p.value.outcome]} in ${formatDuration(durationMs(p.value.duration))}${p.value.exitCode !== undefined ? `, exit ${p.value.exitCode}` : ""}${p.value.message ? `: ${p.value.message}` : ""}`];
    case "logChunk":
      return ["log.chunk", `${p.value.step}`];
    default:
      return ["unknown", ""];
  }
}

/** The run's events, newest first; log chunks are counted here and shown by the log. */
export function EventsSection({ model, position }: { model: RunModel; position: WatchPosition }) {
  return (
    <section aria-labelledby="events-h" class="panel">
      <h2 id="events-h">Events</h2>
      <p class="muted small" data-events-received={model.received} data-last-attempt={position.attempt} data-last-sequence={String(position.sequence)} data-duplicates={model.duplicates}>
        {model.received} events received (through #{String(position.sequence)} of attempt {position.attempt}), {model.logChunks} of them log output, shown in the log.
        {model.dropped > 0 && ` The ${model.dropped} oldest are not listed.`}
      </p>
      {/* Log chunks change the counts above, not the list: the list renders only when it changes. */}
      <EventsTable rows={model.rows} version={model.rows.length + model.dropped} />
    </section>
  );
}

class EventsTable extends Component<{ rows: readonly EventRow[]; version: number }> {
  override shouldComponentUpdate(next: { version: number }): boolean {
    return next.version !== this.props.version;
  }

  override render() {
    const rows = [...this.props.rows].reverse();
    if (rows.length === 0) return null;
    return (
      <div class="scroll" tabIndex={0} aria-label="Events, newest first">
        <table class="events">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Attempt</th>
              <th scope="col">#</th>
              <th scope="col">Event</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => {
              const [type, detail] = describe(row.event);
              return (
                <tr key={`${row.attempt}:${row.sequence}`} data-event={type}>
                  <td class="small">{row.at ? new Date(row.at).toLocaleTimeString() : "—"}</td>
                  <td>{row.attempt}</td>
                  <td class="mono">{String(row.sequence)}</td>
                  <td class="mono small">{type}</td>
                  <td>{detail}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    );
  }
}
