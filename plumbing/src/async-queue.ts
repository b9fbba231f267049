/**
 * An unbounded single-consumer queue with an async iterator: producers push from anywhere
 * (callbacks, notifications, timers); one consumer iterates. Closing with an error makes the
 * iteration throw it after the queued items are drained, so a stream ends with its cause.
 */
export function createAsyncQueue<T>() {
  const items: T[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  let failure: unknown;

  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  return {
    push(item: T): boolean {
      if (closed) return false;
      items.push(item);
      notify();
      return true;
    },
    /** Ends the iteration once the queued items are consumed; with an error, throws it then. */
    close(error?: unknown): void {
      if (closed) return;
      closed = true;
      failure = error;
      notify();
    },
    get closed(): boolean {
      return closed;
    },
    get size(): number {
      return items.length;
    },
    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      for (;;) {
        while (items.length > 0) yield items.shift()!;
        if (closed) {
          if (failure !== undefined) throw failure;
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

export type AsyncQueue<T> = ReturnType<typeof createAsyncQueue<T>>;
