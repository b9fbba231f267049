import type { PgPool } from "@corral/plumbing/db/pg-pool.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { LeaseLostError } from "./attempt-store.ts";

interface Pending {
  attemptId: string;
  epoch: bigint;
  waiters: { resolve(): void; reject(error: unknown): void }[];
}

/**
 * Renews the leases of every idle stream of this process in one statement per heartbeat
 * interval, instead of one UPDATE per stream per heartbeat: with thousands of attached,
 * quiet agents, the database sees one write per interval, not thousands.
 *
 * A renewal waits at most one interval, which the lease (several intervals long) absorbs.
 * Each renewal is still fenced by its epoch: a stream whose epoch no longer holds the attempt
 * is told so (LeaseLostError) after the write, as with a single UPDATE.
 */
export function createLeaseRenewer(options: { pool: PgPool; leaseMs: number; intervalMs: number; logger: Logger }) {
  let pending = new Map<string, Pending>();
  let flushing: Promise<void> | undefined;
  let closed = false;

  async function flush(): Promise<void> {
    if (pending.size === 0) return;
    const batch = pending;
    pending = new Map();
    const entries = [...batch.values()];
    try {
      const { rows } = await options.pool.query<{ id: string; epoch: string }>({
        name: "corral_renew_leases",
        text: `update attempts a set lease_expires_at = now() + ($1 * interval '1 millisecond')
                 from unnest($2::uuid[], $3::bigint[]) as t(id, epoch)
                where a.id = t.id and a.lease_epoch = t.epoch
               returning a.id, a.lease_epoch::text as epoch`,
        values: [options.leaseMs, entries.map((e) => e.attemptId), entries.map((e) => e.epoch.toString())],
      });
      const renewed = new Set(rows.map((row) => `${row.id}:${row.epoch}`));
      for (const entry of entries) {
        const held = renewed.has(`${entry.attemptId}:${entry.epoch}`);
        for (const waiter of entry.waiters) held ? waiter.resolve() : waiter.reject(new LeaseLostError());
      }
    } catch (error) {
      options.logger.warn({ err: error, streams: entries.length }, "renewing leases failed");
      for (const entry of entries) for (const waiter of entry.waiters) waiter.reject(error);
    }
  }

  const timer = setInterval(() => {
    // One write at a time: a slow database must not pile statements up.
    flushing ??= flush().finally(() => (flushing = undefined));
  }, options.intervalMs);
  timer.unref();

  return {
    /** Renews the attempt's lease for the stream holding `epoch` with the next batch; rejects with LeaseLostError if that epoch lost it. */
    renew(attemptId: string, epoch: bigint): Promise<void> {
      if (closed) return Promise.resolve();
      const key = `${attemptId}:${epoch}`;
      let entry = pending.get(key);
      if (!entry) pending.set(key, (entry = { attemptId, epoch, waiters: [] }));
      const waiters = entry.waiters;
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    /** Streams waiting for the next batch. */
    get pending(): number {
      return pending.size;
    },
    /** Writes what is pending, then stops. */
    async close(): Promise<void> {
      closed = true;
      clearInterval(timer);
      await flushing;
      await flush();
    },
  };
}

export type LeaseRenewer = ReturnType<typeof createLeaseRenewer>;
