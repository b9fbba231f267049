/**
 * A token bucket that keeps the agent under the stream's event rate. The control plane ends a
 * stream that goes over (RESOURCE_EXHAUSTED), and a replay after a reconnect counts like new
 * events, so the agent paces itself with a margin rather than finding the limit by failing.
 */
export function createPacer(options: { eventsPerSecond: number; burst: number; now?: () => number }) {
  const now = options.now ?? (() => performance.now());
  // 80% of the sustained rate and half the burst: clocks differ and the server's bucket
  // starts counting when the stream opens, not when the first event arrives.
  const rate = Math.max(1, options.eventsPerSecond * 0.8);
  const burst = Math.max(1, Math.floor(options.burst / 2));
  let tokens = burst;
  let last = now();
  return {
    /** Takes a token and returns 0, or returns how many ms to wait before asking again. */
    take(): number {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - last) / 1000) * rate);
      last = t;
      if (tokens >= 1) {
        tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil(((1 - tokens) / rate) * 1000));
    },
  };
}

export type Pacer = ReturnType<typeof createPacer>;
