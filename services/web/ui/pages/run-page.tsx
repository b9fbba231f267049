import { useEffect, useRef, useState } from "preact/hooks";
import type { Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { runs } from "../api.ts";
import { useNow, useTitle, useVisible } from "../components/hooks.ts";
import { StatusBadge } from "../components/status-badge.tsx";
import { codeOf, errorText, sleep } from "../errors.ts";
import { ARTIFACT_STATES, formatDuration, formatTime, isTerminal, ms, RUNTIME_NAMES, runDurationMs, shortId, STATUS_NAMES } from "../format.ts";
import { followRun, type FollowState, type WatchPosition } from "../live/follow-run.ts";
import { createRunModel } from "../live/run-model.ts";
import type { TailState } from "../live/tail-log.ts";
import { Link } from "../router.tsx";
import { Code } from "@connectrpc/connect";
import { ArtifactsSection } from "./run-artifacts.tsx";
import { EventsSection } from "./run-events.tsx";
import { LogSection, useLogTail } from "./run-log.tsx";
import { PhaseTimeline, StepsSection } from "./run-steps.tsx";

/** After a run ends, how often the page looks whether it was retried elsewhere (the CLI, another page). */
const ENDED_POLL_MS = 5000;

export function RunPage({ runId }: { runId: string }) {
  useTitle(`Run ${shortId(runId)}`);
  const [run, setRun] = useState<Run | undefined>();
  const [missing, setMissing] = useState<string | undefined>();
  const [watch, setWatch] = useState<FollowState | { state: "paused" } | undefined>();
  // A new value restarts the watch from where it got to (after a retry).
  const [generation, setGeneration] = useState(0);
  const [, setTick] = useState(0);
  const model = useRef(createRunModel());
  const position = useRef<WatchPosition>({ attempt: 0, sequence: 0n });
  const [artifactsChanged, setArtifactsChanged] = useState(0);
  const visible = useVisible();

  // Many events can arrive at once (a resumed stream, a chatty agent): render at most every 100 ms.
  const renderPending = useRef(false);
  const scheduleRender = () => {
    if (renderPending.current) return;
    renderPending.current = true;
    setTimeout(() => {
      renderPending.current = false;
      setTick((t) => t + 1);
    }, 100);
  };

  useEffect(() => {
    if (!visible) {
      setWatch({ state: "paused" });
      return;
    }
    const stop = new AbortController();
    followRun(runs, {
      runId,
      from: position.current,
      signal: stop.signal,
      onRun: (r) => setRun(r),
      onEvent: (watched) => {
        model.current.add(watched);
        position.current = { attempt: watched.attempt, sequence: watched.event!.sequence };
        if (watched.event?.payload.case === "artifactStatus") setArtifactsChanged((n) => n + 1);
        scheduleRender();
      },
      onState: (state) => setWatch(state),
    }).then(
      (reached) => {
        position.current = reached;
      },
      (error: unknown) => {
        setMissing(codeOf(error) === Code.NotFound ? `There is no run ${runId}.` : errorText(error));
      },
    );
    return () => stop.abort();
  }, [runId, generation, visible]);

  // An ended run can be retried from elsewhere: notice it and follow the new attempt.
  useEffect(() => {
    if (watch?.state !== "ended" || !visible) return;
    const stop = new AbortController();
    void (async () => {
      while (!stop.signal.aborted) {
        await sleep(ENDED_POLL_MS, stop.signal);
        if (stop.signal.aborted) return;
        try {
          const { run: latest } = await runs.getRun({ runId }, { signal: stop.signal });
          if (latest && !isTerminal(latest.status)) {
            setRun(latest);
            setGeneration((g) => g + 1);
            return;
          }
        } catch {
          // next time
        }
      }
    })();
    return () => stop.abort();
  }, [watch?.state, visible, runId]);

  const log = useLogTail(runId, run, visible);

  if (missing) {
    return (
      <section>
        <h1 tabIndex={-1}>Run {shortId(runId)}</h1>
        <p class="notice error" role="alert">
          {missing}
        </p>
        <p>
          <Link href="/">Back to the runs</Link>
        </p>
      </section>
    );
  }
  if (!run) {
    return (
      <section>
        <h1 tabIndex={-1}>Run {shortId(runId)}</h1>
        <p class="muted" role="status">
          {watch?.state === "reconnecting" ? `Cannot reach the scheduler yet: ${errorText(watch.error)} Trying again…` : "Loading…"}
        </p>
      </section>
    );
  }

  const attempt = model.current.attempt(run.attempt);
  return (
    <section class="run">
      <div class="page-head">
        <h1 tabIndex={-1}>
          Run <span class="mono">{shortId(run.id)}</span> <StatusBadge status={run.status} />
        </h1>
        <Actions run={run} onRun={setRun} onRetried={() => setGeneration((g) => g + 1)} />
      </div>
      <ConnectionStatus watch={watch} log={log.state} />
      <FinalReason run={run} />
      <Summary run={run} />
      <div class="columns">
        <PhaseTimeline run={run} attempt={attempt} />
        <StepsSection run={run} attempt={attempt} />
      </div>
      <LogSection runId={runId} run={run} log={log} />
      <ArtifactsSection runId={runId} run={run} changed={artifactsChanged} />
      <EventsSection model={model.current} position={position.current} />
    </section>
  );
}

function Actions({ run, onRun, onRetried }: { run: Run; onRun: (run: Run) => void; onRetried: () => void }) {
  const [busy, setBusy] = useState<"cancel" | "retry" | undefined>();
  const [failure, setFailure] = useState<string | undefined>();
  const terminal = isTerminal(run.status);
  const canCancel = !terminal && !run.cancelRequested;

  async function cancel() {
    if (busy || !canCancel) return;
    if (!confirm(`Cancel run ${shortId(run.id)}? Its agent is stopped (SIGTERM, then SIGKILL after the grace).`)) return;
    setBusy("cancel");
    setFailure(undefined);
    try {
      const { run: updated } = await runs.cancelRun({ runId: run.id, reason: "cancelled from the dashboard" });
      if (updated) onRun(updated);
    } catch (error) {
      setFailure(`Could not cancel: ${errorText(error)}`);
    } finally {
      setBusy(undefined);
    }
  }

  async function retry() {
    if (busy || !terminal) return;
    setBusy("retry");
    setFailure(undefined);
    try {
      const { run: updated } = await runs.retryRun({ runId: run.id });
      if (updated) onRun(updated);
      onRetried();
    } catch (error) {
      setFailure(`Could not retry: ${errorText(error)}`);
    } finally {
      setBusy(undefined);
    }
  }

  return (
    <div class="actions">
      <button type="button" class="danger" onClick={cancel} aria-disabled={!canCancel || busy !== undefined} disabled={!canCancel}>
        {busy === "cancel" ? "Cancelling…" : run.cancelRequested && !terminal ? "Cancel requested" : "Cancel"}
      </button>
      <button type="button" onClick={retry} aria-disabled={!terminal || busy !== undefined} disabled={!terminal}>
        {busy === "retry" ? "Retrying…" : "Retry"}
      </button>
      {failure && (
        <p class="notice error" role="alert">
          {failure}
        </p>
      )}
    </div>
  );
}

function ConnectionStatus({ watch, log }: { watch: FollowState | { state: "paused" } | undefined; log: TailState | undefined }) {
  let text = "Connecting…";
  let kind = "neutral";
  if (watch?.state === "live") [text, kind] = ["Live", "live"];
  if (watch?.state === "ended") [text, kind] = ["Run ended; showing everything it reported", "neutral"];
  if (watch?.state === "paused") [text, kind] = ["Paused while the page is hidden", "neutral"];
  if (watch?.state === "reconnecting") [text, kind] = [`Reconnecting to the scheduler (try ${watch.failures}): ${errorText(watch.error)}`, "warn"];
  if (log?.state === "reconnecting" && watch?.state !== "reconnecting") [text, kind] = [`Reconnecting to the run log (try ${log.failures}): ${errorText(log.error)}`, "warn"];
  return (
    <p class={`connection ${kind}`} role="status" data-state={watch?.state ?? "connecting"}>
      {text}
    </p>
  );
}

function FinalReason({ run }: { run: Run }) {
  if (!isTerminal(run.status) && !run.cancelRequested) return null;
  return (
    <div class={`final status-box status-${STATUS_NAMES[run.status]}`}>
      <h2>{isTerminal(run.status) ? `Run ${STATUS_NAMES[run.status]}` : "Cancellation requested"}</h2>
      {run.reason && <p class="reason">{run.reason}</p>}
      {run.cancelRequested && run.cancelReason && <p>Cancel reason: {run.cancelReason}</p>}
    </div>
  );
}

function Summary({ run }: { run: Run }) {
  // Ticks here, not in the page: the page's events and log need no re-render every second.
  const now = useNow();
  const spec = run.spec;
  const result = run.result;
  return (
    <section aria-labelledby="summary-h">
      <h2 id="summary-h" class="visually-hidden">
        Summary
      </h2>
      <dl class="summary">
        <div>
          <dt>Run id</dt>
          <dd class="mono">{run.id}</dd>
        </div>
        <div>
          <dt>Repository</dt>
          <dd class="mono">{spec?.repositoryUrl}</dd>
        </div>
        <div>
          <dt>Base ref</dt>
          <dd class="mono">{spec?.baseRef}</dd>
        </div>
        <div>
          <dt>Branch</dt>
          <dd class="mono" data-field="branch">
            {result?.branch || spec?.branch || "—"}
            {!result?.branch && spec?.branch ? <span class="muted small"> (not pushed yet)</span> : null}
          </dd>
        </div>
        <div>
          <dt>Commit</dt>
          <dd class="mono" data-field="commit">
            {result?.commitSha || "—"}
          </dd>
        </div>
        {result && result.changedFiles.length > 0 && (
          <div>
            <dt>Changed files</dt>
            <dd class="mono">{result.changedFiles.join(", ")}</dd>
          </div>
        )}
        <div>
          <dt>Runtime</dt>
          <dd>{RUNTIME_NAMES[run.runtime]}</dd>
        </div>
        <div>
          <dt>Attempt</dt>
          <dd data-field="attempt">{run.attempt || "—"}</dd>
        </div>
        <div>
          <dt>Submitted</dt>
          <dd>{formatTime(ms(run.createdAt))}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{formatDuration(runDurationMs(run, now))}</dd>
        </div>
        <div>
          <dt>Artifacts</dt>
          <dd>{ARTIFACT_STATES[run.artifactState]}</dd>
        </div>
        <div class="wide">
          <dt>Agent command</dt>
          <dd class="mono">{spec?.agent?.commandTemplate}</dd>
        </div>
        <div class="wide">
          <dt>Prompt</dt>
          <dd class="prompt">{spec?.agent?.prompt}</dd>
        </div>
      </dl>
    </section>
  );
}
