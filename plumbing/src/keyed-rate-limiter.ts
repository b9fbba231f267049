import { createHash } from "node:crypto";

export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number };

const OK: RateDecision = Object.freeze({ ok: true });

/**
 * One token bucket per key (a credential, say): `perMinute` calls a minute, all of them at once
 * at most. Keys are stored as digests, so secrets are not kept as map keys and a huge key costs
 * no memory. At most `maxKeys` buckets are kept, least recently used dropped first: a dropped
 * bucket comes back full, which costs an attacker with that many credentials nothing it had not.
 */
export function createKeyedRateLimiter(options: { perMinute: number; burst?: number; maxKeys?: number; now?: () => number }) {
  const rate = options.perMinute / 60_000; // tokens per millisecond
  const burst = options.burst ?? options.perMinute;
  const maxKeys = options.maxKeys ?? 100_000;
  const now = options.now ?? (() => performance.now());
  const buckets = new Map<string, { tokens: number; last: number }>();
  return {
    take(key: string): RateDecision {
      const digest = createHash("sha256").update(key, "utf8").digest("base64");
      const t = now();
      let bucket = buckets.get(digest);
      if (bucket) {
        buckets.delete(digest); // re-inserted below: the Map's order is the recency order
        bucket.tokens = Math.min(burst, bucket.tokens + (t - bucket.last) * rate);
        bucket.last = t;
      } else {
        bucket = { tokens: burst, last: t };
      }
      buckets.set(digest, bucket);
      if (buckets.size > maxKeys) buckets.delete(buckets.keys().next().value!);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return OK;
      }
      return { ok: false, retryAfterMs: Math.ceil((1 - bucket.tokens) / rate) };
    },
  };
}

export type KeyedRateLimiter = ReturnType<typeof createKeyedRateLimiter>;
