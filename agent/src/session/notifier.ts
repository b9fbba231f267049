/**
 * A level-free wake-up: `wait()` resolves at the next `notify()` (or when the signal aborts).
 * Callers re-check their condition after every wake, so a notify between checks is never
 * lost as long as the check and the wait run in the same synchronous stretch.
 */
export function createNotifier() {
  let waiters: (() => void)[] = [];
  return {
    notify(): void {
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
    wait(signal?: AbortSignal): Promise<void> {
      if (signal?.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          resolve();
        };
        waiters.push(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    },
  };
}

export type Notifier = ReturnType<typeof createNotifier>;
