/**
 * Batches items for a writer: while one write is in flight, new items go into the open batch
 * and are written together next. An idle stream gets one write per message (lowest latency);
 * a busy one gets few large writes (highest throughput). A batch that reports itself full is
 * sealed and the next item opens another; batches are written one at a time, in order. The
 * first failed write stops the batcher and is reported once.
 */
export function createGroupCommit<B extends { readonly full: boolean }>(options: {
  newBatch: () => B;
  write: (batch: B) => Promise<void>;
  onError: (error: unknown) => void;
}) {
  const queue: B[] = []; // sealed batches first, the open one last
  let open: B | undefined;
  let running: Promise<void> | undefined;
  let failure: unknown;

  const drain = async () => {
    while (queue.length > 0 && failure === undefined) {
      const batch = queue.shift()!;
      if (batch === open) open = undefined;
      try {
        await options.write(batch);
      } catch (error) {
        failure = error;
        queue.length = 0;
        open = undefined;
        options.onError(error);
      }
    }
    running = undefined;
  };

  return {
    /**
     * The batch to add the next item to. The write starts a microtask later, so every item
     * added while handling one message goes out together.
     */
    batch(): B {
      if (failure !== undefined) return options.newBatch(); // never written: the stream is failing
      if (!open || open.full) {
        open = options.newBatch();
        queue.push(open);
      }
      running ??= Promise.resolve().then(drain);
      return open;
    },
    /** Resolves when everything added so far is written; rejects if a write failed. */
    async flush(): Promise<void> {
      while (running) await running;
      if (failure !== undefined) throw failure;
    },
  };
}
