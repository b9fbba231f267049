/**
 * Batches items for a writer: while one write is in flight, new items wait and go together in
 * the next. An idle stream gets one write per item (lowest latency); a busy one gets few large
 * writes (highest throughput). The first failed write stops the batcher and is reported once.
 */
export function createGroupCommit<T>(options: { write: (items: T[]) => Promise<void>; onError: (error: unknown) => void; maxBatch?: number }) {
  const maxBatch = options.maxBatch ?? 5000;
  let pending: T[] = [];
  let running: Promise<void> | undefined;
  let failure: unknown;

  const drain = async () => {
    while (pending.length > 0 && failure === undefined) {
      const batch = pending.length <= maxBatch ? pending : pending.slice(0, maxBatch);
      pending = pending.length <= maxBatch ? [] : pending.slice(maxBatch);
      try {
        await options.write(batch);
      } catch (error) {
        failure = error;
        pending = [];
        options.onError(error);
      }
    }
    running = undefined;
  };

  return {
    add(item: T): void {
      if (failure !== undefined) return;
      pending.push(item);
      running ??= drain();
    },
    /** Resolves when everything added so far is written; rejects if a write failed. */
    async flush(): Promise<void> {
      while (running) await running;
      if (failure !== undefined) throw failure;
    },
  };
}
