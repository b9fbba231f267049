import type { Phase, RunEvent, StepKind, StepOutcome } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import type { WatchedEvent } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { durationMs, ms } from "../format.ts";

export interface PhaseMark {
  phase: Phase;
  at: number;
}

export interface StepView {
  name: string;
  kind: StepKind;
  startedAt?: number;
  timeoutMs?: number;
  finishedAt?: number;
  outcome?: StepOutcome;
  durationMs?: number;
  exitCode?: number;
  signal?: string;
  message?: string;
}

/** One event as the events list shows it (log chunks are counted, not listed: the log shows them). */
export interface EventRow {
  attempt: number;
  sequence: bigint;
  at?: number;
  event: RunEvent;
}

export interface AttemptView {
  attempt: number;
  phases: PhaseMark[];
  steps: StepView[];
}

/** Most events the list keeps; older ones are dropped from view (the run keeps them all). */
const MAX_ROWS = 2000;

/**
 * What the run page shows, folded from WatchRun's events as they arrive: per attempt the phase
 * timeline and the steps with their durations, and the list of events. No DOM, no framework.
 */
export function createRunModel() {
  const attempts = new Map<number, AttemptView>();
  const rows: EventRow[] = [];
  let received = 0;
  let logChunks = 0;
  let dropped = 0;
  // Events arrive in (attempt, sequence) order: anything at or before the last one is a repeat.
  let last = { attempt: 0, sequence: 0n };
  let duplicates = 0;

  const attemptView = (attempt: number): AttemptView => {
    let view = attempts.get(attempt);
    if (!view) attempts.set(attempt, (view = { attempt, phases: [], steps: [] }));
    return view;
  };

  return {
    add({ attempt, event }: WatchedEvent): void {
      if (!event) return;
      if (attempt < last.attempt || (attempt === last.attempt && event.sequence <= last.sequence)) {
        duplicates++;
        return;
      }
      last = { attempt, sequence: event.sequence };
      received++;
      const at = ms(event.time);
      const view = attemptView(attempt);
      const payload = event.payload;
      switch (payload.case) {
        case "logChunk":
          logChunks++;
          return;
        case "phaseChanged":
          view.phases.push({ phase: payload.value.phase, at: at ?? Date.now() });
          break;
        case "stepStarted":
          view.steps.push({ name: payload.value.name, kind: payload.value.kind, startedAt: at, timeoutMs: durationMs(payload.value.timeout) });
          break;
        case "stepFinished": {
          const step = [...view.steps].reverse().find((s) => s.name === payload.value.name && s.outcome === undefined);
          const finished = {
            finishedAt: at,
            outcome: payload.value.outcome,
            durationMs: durationMs(payload.value.duration),
            exitCode: payload.value.exitCode,
            signal: payload.value.signal || undefined,
            message: payload.value.message || undefined,
          };
          if (step) Object.assign(step, finished);
          else view.steps.push({ name: payload.value.name, kind: payload.value.kind, ...finished });
          break;
        }
        default:
          break;
      }
      rows.push({ attempt, sequence: event.sequence, at, event });
      if (rows.length > MAX_ROWS) {
        rows.shift();
        dropped++;
      }
    },
    attempt: (attempt: number): AttemptView | undefined => attempts.get(attempt),
    get rows(): readonly EventRow[] {
      return rows;
    },
    /** Events received, log chunks included; each (attempt, sequence) counted once. */
    get received(): number {
      return received;
    },
    get logChunks(): number {
      return logChunks;
    },
    get dropped(): number {
      return dropped;
    },
    /** Events received more than once (a resumed stream must make this 0). */
    get duplicates(): number {
      return duplicates;
    },
  };
}

export type RunModel = ReturnType<typeof createRunModel>;
