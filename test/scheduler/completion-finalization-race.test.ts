import assert from "node:assert/strict";
import { createLogger } from "@corral/plumbing/logger.ts";
import { openDatabase, type Database } from "@corral/plumbing/db/open-database.ts";
import { createPgPool, type PgPool } from "@corral/plumbing/db/pg-pool.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { createAttemptStore } from "@corral/control-plane/attach/attempt-store.ts";
import { createReconciler } from "@corral/scheduler/reconcile/reconciler.ts";
import { createRunStore } from "@corral/scheduler/runs/run-store.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { createScriptedRuntime } from "./support/scripted-runtime.ts";
import { seedRunningRun } from "./support/seed-running-run.ts";

/**
 * The agent's completion (control plane) and the run's finalization (scheduler) write the same
 * two rows, the attempt and the run. Taken in opposite orders they deadlock, and PostgreSQL
 * breaks that after deadlock_timeout by failing one side. They must take them in one order.
 */
describe("completion and finalization at the same moment", function () {
  this.timeout(120_000);
  let testDb: TestDatabase;
  let database: Database;
  let pool: PgPool;
  let sql: Sql;
  before(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, logger: createLogger({ name: "test", level: "silent" }) });
    pool = createPgPool(testDb.url, 20);
    sql = createSql(database.orm);
  });
  after(async () => {
    await pool.end();
    await database.close();
    await testDb.drop();
  });

  const deadlocks = async () => {
    const row = await sql.one<{ deadlocks: string }>("select pg_stat_clear_snapshot(), deadlocks from pg_stat_database where datname = current_database()");
    return Number(row!.deadlocks);
  };

  const lockWaiters = async () =>
    Number((await sql.one<{ n: string }>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"))!.n);
  const untilLockWaiters = async (n: number) => {
    for (const deadline = Date.now() + 10_000; (await lockWaiters()) < n; ) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} transactions to wait on a lock`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  it("take the attempt and the run in one order: lined up on the run's lock, they do not deadlock", async () => {
    const runtime = createScriptedRuntime();
    const reconciler = createReconciler({
      sql,
      runtimes: new Map([["local", runtime.backend]]),
      logger: createLogger({ name: "test", level: "silent" }),
      completionWaitMs: 10_000,
      defaultGraceMs: 10,
      onFinalized: () => {},
    });
    const attempts = createAttemptStore(database.orm, pool);
    const runs = createRunStore(sql);
    const before = await deadlocks();
    try {
      for (let round = 0; round < 3; round++) {
        const id = await seedRunningRun(sql);
        // Decidable without a completion: a cancel, and the sandbox has stopped.
        await runs.requestCancel(id, "test", 10);
        runtime.set(id, "failed");
        const record = (await attempts.find(id, 1))!;
        // A third transaction holds the run, so that the finalization and then the completion
        // queue up behind it, each having taken whatever it takes before the run.
        const blocker = await pool.connect();
        try {
          await blocker.query("begin");
          await blocker.query("select 1 from runs where id = $1 for update", [id]);
          const finalized = reconciler.reconcileRun(id);
          await untilLockWaiters(1);
          const completed = attempts.recordCompletion(record, 1n, 60_000, { idempotencyKey: "k", status: "cancelled", result: {}, reason: "cancelled", artifactState: null });
          await untilLockWaiters(2);
          await blocker.query("commit");
          const [, verdict] = await Promise.all([finalized, completed]);
          assert.deepEqual(verdict, { outcome: "conflict", why: "run_terminal" }, "the run was finalized first; the completion is recorded as late");
        } finally {
          blocker.release();
        }
        assert.equal((await sql.one<{ status: string }>("select status from runs where id = ?", [id]))?.status, "cancelled");
      }
    } finally {
      reconciler.close();
    }
    // Statistics reach the view when a backend reports them; give them the moment that takes.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await deadlocks()) - before, 0, "deadlocks PostgreSQL had to break");
  });
});
