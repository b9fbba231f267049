import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { LeaseSupersededSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createPgPool, type PgPool } from "@corral/plumbing/db/pg-pool.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import { LeaseLostError } from "@corral/control-plane/attach/attempt-store.ts";
import { createLeaseRenewer } from "@corral/control-plane/attach/lease-renewer.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { openAttach } from "../support/attach-client.ts";

const logger = createLogger({ name: "test", level: "silent" });

describe("lease renewer", () => {
  let fx: ControlPlaneFixture;
  let pool: PgPool;
  let sql: Sql;
  let statements: string[];
  before(async () => {
    fx = await startControlPlaneFixture({ CORRAL_HEARTBEAT_INTERVAL: "200ms", CORRAL_LEASE_DURATION: "5s" });
    sql = fx.sql;
    pool = createPgPool(fx.database.url, 2);
    statements = [];
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0] as string | { text: string };
      statements.push(typeof first === "string" ? first : first.text);
      return query(...args);
    };
  });
  after(async () => {
    await pool.end();
    await fx.close();
  });

  const leaseOf = (attemptId: string) =>
    sql.one<{ expires: string; epoch: string }>("select extract(epoch from lease_expires_at) * 1000 as expires, lease_epoch as epoch from attempts where id = ?", [attemptId]);

  it("renews many streams' leases in one statement per interval, fenced by each epoch", async () => {
    const runs = await Promise.all(Array.from({ length: 5 }, () => seedLaunchedRun(sql)));
    for (const run of runs) await sql.run("update attempts set lease_epoch = 3, lease_expires_at = now() where id = ?", [run.attemptId]);
    const renewer = createLeaseRenewer({ pool, leaseMs: 60_000, intervalMs: 100, logger });
    try {
      statements.length = 0;
      const renewed = runs.slice(0, 4).map((run) => renewer.renew(run.attemptId, 3n));
      const stale = renewer.renew(runs[4]!.attemptId, 2n);
      const again = renewer.renew(runs[0]!.attemptId, 3n); // a second heartbeat in the same interval
      assert.equal(renewer.pending, 5, "one entry per stream");
      await Promise.all([...renewed, again]);
      await assert.rejects(stale, LeaseLostError, "a superseded epoch is told it lost the lease");
      assert.equal(statements.length, 1, `one statement for all of them: ${statements.join(" | ")}`);
      for (const run of runs.slice(0, 4)) {
        const lease = await leaseOf(run.attemptId);
        assert.ok(Number(lease!.expires) > Date.now() + 50_000, "renewed for the lease duration");
        assert.equal(lease!.epoch, "3", "the epoch is not touched");
      }
      assert.ok(Number((await leaseOf(runs[4]!.attemptId))!.expires) < Date.now() + 1000, "the stale epoch renewed nothing");
      await new Promise((resolve) => setTimeout(resolve, 350));
      assert.equal(statements.length, 1, "nothing pending, nothing written");
    } finally {
      await renewer.close();
    }
  });

  it("rejects every waiter with the database's error when the write fails", async () => {
    const run = await seedLaunchedRun(sql);
    const broken = createPgPool("postgres://nobody:wrong@127.0.0.1:1/none", 1);
    const renewer = createLeaseRenewer({ pool: broken, leaseMs: 60_000, intervalMs: 50, logger });
    try {
      await assert.rejects(renewer.renew(run.attemptId, 0n), (error: Error) => !(error instanceof LeaseLostError));
    } finally {
      await renewer.close();
      await broken.end();
    }
  });

  it("keeps an idle attached stream's lease alive through the control plane's batched heartbeats", async () => {
    const run = await seedLaunchedRun(sql);
    const stream = openAttach(fx.url);
    stream.hello(run.runId, 1, run.token);
    const welcome = await stream.next("welcome");
    const first = Number((await leaseOf(run.attemptId))!.expires);
    for (let i = 0; i < 4; i++) {
      stream.send({ case: "heartbeat", value: { leaseEpoch: welcome.leaseEpoch } });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const later = Number((await leaseOf(run.attemptId))!.expires);
    assert.ok(later > first + 500, `the lease moved on (${later - first} ms)`);
    // A stale epoch on a heartbeat still ends the stream at once.
    stream.send({ case: "heartbeat", value: { leaseEpoch: welcome.leaseEpoch + 5n } });
    const ended = await stream.ended();
    assert.equal(ended?.code, Code.Aborted, ended?.message);
    assert.equal(ended?.findDetails(LeaseSupersededSchema)[0]?.currentEpoch, welcome.leaseEpoch, "names the epoch the stream holds");
  });
});
