import { createKeyedWakeups } from "@corral/plumbing/keyed-wakeups.ts";
import type { PgListener } from "@corral/plumbing/db/pg-listener.ts";

/**
 * Wakes whoever follows a run (WatchRun streams) when PostgreSQL says it
 * changed: new events, a status change, a completion. One LISTEN connection per process,
 * however many followers.
 */
export async function createRunNotifier(listener: PgListener, channels: string[]) {
  const wakeups = createKeyedWakeups();
  for (const channel of channels) await listener.on(channel, wakeups.notify);
  return {
    /** Calls `wake` whenever the run changes, until the returned function is called. */
    follow: wakeups.follow,
    /** Wakes followers of a run changed by this process, without waiting for the round trip. */
    notify: wakeups.notify,
  };
}

export type RunNotifier = Awaited<ReturnType<typeof createRunNotifier>>;
