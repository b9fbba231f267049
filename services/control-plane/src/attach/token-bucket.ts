/**
 * A token bucket: `rate` tokens a second up to `burst`. take() says whether an event may pass
 * and, when not, how long until it could.
 */
const OK = Object.freeze({ ok: true as const }); // taken once per event: no allocation

export function createTokenBucket(rate: number, burst: number, now: () => number = performance.now.bind(performance)) {
  let tokens = burst;
  let last = now();
  return {
    take(count = 1): { ok: true } | { ok: false; retryAfterMs: number } {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - last) / 1000) * rate);
      last = t;
      if (tokens >= count) {
        tokens -= count;
        return OK;
      }
      return { ok: false, retryAfterMs: Math.ceil(((count - tokens) / rate) * 1000) };
    },
  };
}
