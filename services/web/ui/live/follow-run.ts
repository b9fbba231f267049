import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { RunService, Run, WatchedEvent } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { backoffMs, codeOf, sleep } from "../errors.ts";
import { isTerminal } from "../format.ts";

/** Where a watch has got to: the last event seen. (0, 0) is the start. */
export interface WatchPosition {
  attempt: number;
  sequence: bigint;
}

export type FollowState = { state: "live" } | { state: "reconnecting"; error: unknown; failures: number } | { state: "ended" };

export interface FollowRunOptions {
  runId: string;
  /** Resume after this event; events up to it are not sent again. */
  from?: WatchPosition;
  signal: AbortSignal;
  onRun(run: Run): void;
  onEvent(event: WatchedEvent): void;
  onState?(state: FollowState): void;
  /**
   * Events one WatchRun call may carry before it is reopened from where it got to: connect-es
   * keeps every message of a stream until the stream ends (#1524), so a run with a million log
   * events would otherwise keep them all, here and in the web service.
   */
  windowEvents?: number;
}

/**
 * Follows a run with WatchRun until it is terminal and every event is seen. A broken stream (a
 * restarted scheduler or web service, a network blip) is resumed from the last event seen, with
 * backoff, for as long as it takes: nothing is shown twice and nothing is missed. Resolves with
 * the position reached; rejects only on NOT_FOUND or INVALID_ARGUMENT, which no retry can fix.
 */
export async function followRun(client: Client<typeof RunService>, options: FollowRunOptions): Promise<WatchPosition> {
  const { signal } = options;
  const windowEvents = options.windowEvents ?? 2000;
  const position: WatchPosition = { ...(options.from ?? { attempt: 0, sequence: 0n }) };
  let failures = 0;
  let last: Run | undefined;
  while (!signal.aborted) {
    const call = new AbortController();
    const stop = () => call.abort();
    signal.addEventListener("abort", stop, { once: true });
    let events = 0;
    let announced = false;
    try {
      const stream = client.watchRun({ runId: options.runId, afterAttempt: position.attempt, afterSequence: position.sequence }, { signal: call.signal });
      for await (const message of stream) {
        if (!announced) options.onState?.({ state: "live" });
        announced = true;
        failures = 0;
        if (message.update.case === "run") {
          last = message.update.value;
          options.onRun(last);
        }
        else if (message.update.case === "event") {
          const watched = message.update.value;
          // A resumed stream starts after the position, but a watcher that is told twice must not show twice.
          if (watched.attempt < position.attempt || (watched.attempt === position.attempt && watched.event!.sequence <= position.sequence)) continue;
          position.attempt = watched.attempt;
          position.sequence = watched.event!.sequence;
          options.onEvent(watched);
          if (++events >= windowEvents) break;
        }
      }
      if (events >= windowEvents) continue;
      // WatchRun ends once the run is terminal; an end before that is a stream cut short
      // (a server that drained without saying so): resume it like any broken stream.
      if (last === undefined || !isTerminal(last.status)) throw new ConnectError("the watch ended before the run did", Code.Unavailable);
      options.onState?.({ state: "ended" });
      return position;
    } catch (error) {
      if (signal.aborted) break;
      const code = codeOf(error);
      if (code === Code.NotFound || code === Code.InvalidArgument) throw error;
      failures++;
      options.onState?.({ state: "reconnecting", error, failures });
      await sleep(backoffMs(failures), signal);
    } finally {
      signal.removeEventListener("abort", stop);
      call.abort();
    }
  }
  return position;
}
