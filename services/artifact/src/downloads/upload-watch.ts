/**
 * Wakes the downloads following an upload when it commits, finishes or fails. The upload's own
 * stream calls notify directly (same process, no round trip); other replicas' commits arrive
 * through PostgreSQL NOTIFY, wired to notify at start-up. One set of wake-ups per upload id.
 */
export function createUploadWatch() {
  const watchers = new Map<string, Set<() => void>>();
  return {
    /** Calls `wake` whenever the upload changes, until the returned function is called. */
    watch(uploadId: string, wake: () => void): () => void {
      let set = watchers.get(uploadId);
      if (!set) watchers.set(uploadId, (set = new Set()));
      set.add(wake);
      return () => {
        set.delete(wake);
        if (set.size === 0) watchers.delete(uploadId);
      };
    },
    notify(uploadId: string): void {
      for (const wake of watchers.get(uploadId) ?? []) wake();
    },
    /** Wakes every follower, to look again after notifications may have been lost. */
    notifyAll(): void {
      for (const set of watchers.values()) for (const wake of set) wake();
    },
    /** Uploads with at least one follower here; for tests and metrics. */
    get watched(): number {
      return watchers.size;
    },
  };
}

export type UploadWatch = ReturnType<typeof createUploadWatch>;
