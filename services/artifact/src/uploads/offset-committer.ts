/**
 * Group commit of an upload's offset. Every chunk is written to the blob store before the next
 * message is read; committing (sync the bytes, then record the offset in PostgreSQL) runs beside
 * the writes, one commit at a time, each covering everything written before it started. A slow
 * commit thus batches many chunks, and the trailing chunk is committed as soon as the commit
 * before it is done.
 *
 * `minIntervalMs` spaces commit starts: back to back, a fast upload made one fdatasync and one
 * five-statement transaction every few milliseconds, which cost a 2-core machine more than the
 * bytes did. Spaced, a commit covers everything written over the interval; a crash loses at most
 * that much (the client resumes from the committed offset), and a follower sees bytes that much
 * later. `flush` never waits for the interval.
 *
 * `commit(offset)` must make bytes [0, offset) durable before recording the offset; it is never
 * called with an offset lower than a previous one. A failed commit fails every later call.
 */
export function createOffsetCommitter(options: {
  start: number;
  commit: (offset: number) => Promise<void>;
  /** Least time from one commit's start to the next one's, unless flushed; 0 by default. */
  minIntervalMs?: number;
  /** Told at once when a commit fails, so the stream can end without waiting for its next message. */
  onError?: (error: unknown) => void;
}) {
  const minIntervalMs = options.minIntervalMs ?? 0;
  let written = options.start;
  let committed = options.start;
  let running: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;
  let lastStart = Number.NEGATIVE_INFINITY;
  /** Ends the wait for the interval, when one is under way. */
  let hurry: (() => void) | undefined;
  let flushing = 0;

  const spaced = async () => {
    // Timers may fire a little early by this clock, so the wait is measured again after each.
    for (let wait = lastStart + minIntervalMs - performance.now(); wait > 0 && flushing === 0; wait = lastStart + minIntervalMs - performance.now()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.ceil(wait));
        function done() {
          clearTimeout(timer);
          hurry = undefined;
          resolve();
        }
        hurry = done;
      });
    }
  };

  const run = () => {
    running = (async () => {
      while (written > committed && !failure) {
        await spaced();
        const target = written;
        lastStart = performance.now();
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
    /** Waits until everything written is committed, at once; returns the committed offset. */
    async flush(): Promise<number> {
      flushing++;
      try {
        for (;;) {
          hurry?.();
          if (running) await running;
          if (failure) throw failure.error;
          if (written <= committed) return committed;
          run();
        }
      } finally {
        flushing--;
      }
    },
  };
}

export type OffsetCommitter = ReturnType<typeof createOffsetCommitter>;
