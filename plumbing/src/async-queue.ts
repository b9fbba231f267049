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
    // A plain iterator rather than an async generator: a control plane holds thousands of
    // these open and idle (one per attached agent), and a suspended generator with its
    // request queue and promises costs several times what one pending `wait` does.
    [Symbol.asyncIterator](): AsyncIterator<T> {
      // Ended by the consumer (return or throw, as a generator would be): no more items.
      let finished = false;
      return {
        async next(): Promise<IteratorResult<T>> {
          for (;;) {
            if (finished) return { done: true, value: undefined };
            if (items.length > 0) return { done: false, value: items.shift()! };
            if (closed) {
              finished = true;
              if (failure !== undefined) throw failure;
              return { done: true, value: undefined };
            }
            await new Promise<void>((resolve) => (wake = resolve));
          }
        },
        async return(value?: unknown): Promise<IteratorResult<T>> {
          finished = true;
          notify();
          return { done: true, value: value as never };
        },
        async throw(error?: unknown): Promise<IteratorResult<T>> {
          finished = true;
          notify();
          throw error;
        },
      };
    },
  };
}

export type AsyncQueue<T> = ReturnType<typeof createAsyncQueue<T>>;
