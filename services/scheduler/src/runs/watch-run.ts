import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { RunEventSchema } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import type { WatchRunRequest, WatchRunResponseSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { invalidArgument } from "@corral/plumbing/errors.ts";
import type { RunNotifier } from "./run-notifier.ts";
import { TERMINAL_STATUSES, toRunMessage, type RunRow } from "./run-row.ts";
import type { RunStore } from "./run-store.ts";

// Sequences are stored as PostgreSQL bigint; a larger position cannot be compared with them.
const MAX_SEQUENCE = 2n ** 63n - 1n;

// Notifications can be lost while the LISTEN connection reconnects; look again at this pace anyway.
const FALLBACK_POLL_MS = 5000;

/**
 * WatchRun: the run's state, then its stored events from the requested position, then live
 * events and state changes, until the run is terminal and every event has been sent.
 */
export async function* watchRun(
  store: RunStore,
  notifier: RunNotifier,
  request: WatchRunRequest,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof WatchRunResponseSchema>> {
  if (request.afterSequence > MAX_SEQUENCE) throw invalidArgument([{ field: "after_sequence", description: `must be at most ${MAX_SEQUENCE}` }]);
  let run = await store.get(request.runId);
  let changed = true;
  let wake: (() => void) | undefined;
  const unfollow = notifier.follow(run.id, () => {
    changed = true;
    wake?.();
  });
  let attempt = request.afterAttempt;
  let sequence = request.afterSequence;
  let sentState = "";
  try {
    yield { update: { case: "run", value: toRunMessage(run) } };
    sentState = stateKey(run);
    while (!signal.aborted) {
      changed = false;
      // Read the state before the events: events stored before a terminal status are then
      // always sent before the stream ends.
      run = await store.get(run.id);
      for (;;) {
        const page = await store.eventsAfter(run.id, attempt, sequence);
        for (const row of page) {
          attempt = row.attempt;
          sequence = BigInt(row.sequence);
          yield { update: { case: "event", value: { attempt, event: fromBinary(RunEventSchema, row.payload) } } };
        }
        if (page.length < 500) break;
      }
      if (stateKey(run) !== sentState) {
        yield { update: { case: "run", value: toRunMessage(run) } };
        sentState = stateKey(run);
      }
      if (TERMINAL_STATUSES.includes(run.status)) return;
      // An abort during the reads above has fired already: waiting for it would wait for the poll.
      if (!changed && !signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, FALLBACK_POLL_MS);
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            wake = undefined;
            resolve();
          };
          wake = done;
          signal.addEventListener("abort", done);
        });
      }
    }
    // Ended by a drain or the client, not by the run's end: say why, so a watcher resumes
    // instead of taking the end of the stream for the end of the run.
    signal.throwIfAborted();
  } finally {
    unfollow();
  }
}

function stateKey(run: RunRow): string {
  return [run.status, run.phase, run.current_step, run.current_attempt, run.cancel_requested_at, run.reason].join("|");
}
