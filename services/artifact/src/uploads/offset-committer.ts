/**
 * Group commit of an upload's offset. Every chunk is written to the blob store before the next
 * message is read; committing (sync the bytes, then record the offset in PostgreSQL) runs beside
 * the writes, one commit at a time, each covering everything written before it started. A slow
 * commit thus batches many chunks, a fast one keeps followers close behind the writer, and no
 * timer is needed: the trailing chunk is committed as soon as the commit before it is done.
 *
 * `commit(offset)` must make bytes [0, offset) durable before recording the offset; it is never
 * called with an offset lower than a previous one. A failed commit fails every later call.
 */
export function createOffsetCommitter(options: {
  start: number;
  commit: (offset: number) => Promise<void>;
  /** Told at once when a commit fails, so the stream can end without waiting for its next message. */
  onError?: (error: unknown) => void;
}) {
  let written = options.start;
  let committed = options.start;
  let running: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;

  const run = () => {
    running = (async () => {
      while (written > committed && !failure) {
        const target = written;
        await options.commit(target);
        committed = target;
      }
    })()
      .catch((error: unknown) => {
        if (failure) return;
        failure = { error };
        options.onError?.(error);
      })
      .finally(() => {
        running = undefined;
      });
  };

  return {
    get written(): number {
      return written;
    },
    get committed(): number {
      return committed;
    },
    /** Records that bytes up to `offset` are written, and starts a commit unless one is running. */
    advance(offset: number): void {
      if (failure) throw failure.error;
      written = offset;
      if (!running) run();
    },
    /** Waits until everything written is committed; returns the committed offset. */
    async flush(): Promise<number> {
      for (;;) {
        if (running) await running;
        if (failure) throw failure.error;
        if (written <= committed) return committed;
        run();
      }
    },
  };
}

export type OffsetCommitter = ReturnType<typeof createOffsetCommitter>;
