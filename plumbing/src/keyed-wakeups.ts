/**
 * Wake-up callbacks by key (a run id, an upload id): whoever follows a key is called whenever
 * something says it changed, from this process or relayed from PostgreSQL NOTIFY. One map for
 * any number of followers, with nothing to poll.
 */
export function createKeyedWakeups() {
  const followers = new Map<string, Set<() => void>>();
  return {
    /** Calls `wake` whenever `key` changes, until the returned function is called. */
    follow(key: string, wake: () => void): () => void {
      let set = followers.get(key);
      if (!set) followers.set(key, (set = new Set()));
      set.add(wake);
      return () => {
        set.delete(wake);
        if (set.size === 0) followers.delete(key);
      };
    },
    notify(key: string): void {
      for (const wake of followers.get(key) ?? []) wake();
    },
    /** Wakes every follower, to look again after notifications may have been lost. */
    notifyAll(): void {
      for (const set of followers.values()) for (const wake of set) wake();
    },
    /** Keys with at least one follower here; for tests and metrics. */
    get size(): number {
      return followers.size;
    },
  };
}

export type KeyedWakeups = ReturnType<typeof createKeyedWakeups>;
