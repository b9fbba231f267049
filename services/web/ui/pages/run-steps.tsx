import type { Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { formatDuration, formatTime, isTerminal, ms, PHASES, STEP_KINDS, STEP_OUTCOMES } from "../format.ts";
import { useNow } from "../components/hooks.ts";
import type { AttemptView } from "../live/run-model.ts";

/** The pipeline's phases for the current attempt: done, current or not reached, with how long each took. */
export function PhaseTimeline({ run, attempt }: { run: Run; attempt: AttemptView | undefined }) {
  const now = useNow();
  const marks = attempt?.phases ?? [];
  const end = ms(run.finishedAt) ?? (isTerminal(run.status) ? ms(run.updatedAt) : undefined) ?? now;
  const lastIndex = marks.length - 1;
  const reachedOrder = marks.length > 0 ? Math.max(...marks.map((m) => PHASES.findIndex((p) => p.phase === m.phase))) : -1;
  return (
    <section aria-labelledby="phases-h" class="panel">
      <h2 id="phases-h">Phases{run.attempt > 1 ? ` (attempt ${run.attempt})` : ""}</h2>
      <ol class="timeline">
        {PHASES.map((p, order) => {
          const index = marks.findLastIndex((m) => m.phase === p.phase);
          const mark = marks[index];
          const current = mark !== undefined && index === lastIndex && !isTerminal(run.status);
          const state = mark === undefined ? (order < reachedOrder ? "skipped" : "pending") : current ? "current" : "done";
          const until = mark === undefined ? undefined : index < lastIndex ? marks[index + 1]!.at : end;
          return (
            <li key={p.name} class={`phase ${state}`} aria-current={current ? "step" : undefined} data-phase={p.name} data-state={state}>
              <span class="phase-name">{p.name}</span>
              <span class="phase-detail">
                {state === "pending" && "not reached"}
                {state === "skipped" && "skipped"}
                {mark && (
                  <>
                    <span title={formatTime(mark.at)}>{formatDuration((until ?? now) - mark.at)}</span>
                    {current && <span class="visually-hidden"> (current phase)</span>}
                  </>
                )}
              </span>
            </li>
          );
        })}
      </ol>
    </section>
  );
}

export function StepsSection({ run, attempt }: { run: Run; attempt: AttemptView | undefined }) {
  const now = useNow();
  const steps = attempt?.steps ?? [];
  return (
    <section aria-labelledby="steps-h" class="panel">
      <h2 id="steps-h">Steps</h2>
      {steps.length === 0 ? (
        <p class="muted">{run.attempt === 0 ? "The run has not started yet." : "No step has started yet."}</p>
      ) : (
        <table class="steps">
          <thead>
            <tr>
              <th scope="col">Step</th>
              <th scope="col">Outcome</th>
              <th scope="col">Duration</th>
              <th scope="col">Exit</th>
            </tr>
          </thead>
          <tbody>
            {steps.map((step, i) => {
              const running = step.outcome === undefined;
              const outcome = running ? (isTerminal(run.status) ? "did not finish" : "running") : STEP_OUTCOMES[step.outcome!];
              return (
                <tr key={`${step.name}:${i}`} data-step={step.name} data-outcome={outcome}>
                  <th scope="row">
                    {step.name} <span class="muted small">{STEP_KINDS[step.kind]}</span>
                  </th>
                  <td>
                    <span class={`badge outcome-${outcome.replace(/ /g, "-")}`}>{outcome}</span>
                    {step.message && <div class="small">{step.message}</div>}
                  </td>
                  <td>{running ? (step.startedAt && !isTerminal(run.status) ? `${formatDuration(now - step.startedAt)} so far` : "—") : formatDuration(step.durationMs)}</td>
                  <td>{step.signal ? step.signal : step.exitCode ?? "—"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
