import type { PgListener } from "@corral/plumbing/db/pg-listener.ts";

/**
 * Wakes whoever follows a run (WatchRun streams, the reconciler) when PostgreSQL says it
 * changed: new events, a status change, a completion. One LISTEN connection per process,
 * however many followers.
 */
export async function createRunNotifier(listener: PgListener, channels: string[]) {
  const followers = new Map<string, Set<() => void>>();
  const anyRun = new Set<(runId: string) => void>();
  const notify = (runId: string) => {
    for (const wake of followers.get(runId) ?? []) wake();
    for (const wake of anyRun) wake(runId);
  };
  for (const channel of channels) await listener.on(channel, notify);

  return {
    /** Calls `wake` whenever the run changes, until the returned function is called. */
    follow(runId: string, wake: () => void): () => void {
      let set = followers.get(runId);
      if (!set) followers.set(runId, (set = new Set()));
      set.add(wake);
      return () => {
        set.delete(wake);
        if (set.size === 0) followers.delete(runId);
      };
    },
    /** Calls `wake` with the id of any run that changes. */
    followAll(wake: (runId: string) => void): () => void {
      anyRun.add(wake);
      return () => anyRun.delete(wake);
    },
    /** Wakes followers of a run changed by this process, without waiting for the round trip. */
    notify,
  };
}

export type RunNotifier = Awaited<ReturnType<typeof createRunNotifier>>;
