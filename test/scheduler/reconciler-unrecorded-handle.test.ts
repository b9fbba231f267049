import assert from "node:assert/strict";
import { createLogger } from "@corral/plumbing/logger.ts";
import { openDatabase, type Database } from "@corral/plumbing/db/open-database.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { createReconciler } from "@corral/scheduler/reconcile/reconciler.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { createScriptedRuntime } from "./support/scripted-runtime.ts";
import { seedRunningRun } from "./support/seed-running-run.ts";

describe("reconciler: a sandbox whose handle is not recorded yet", () => {
  let testDb: TestDatabase;
  let database: Database;
  let sql: Sql;
  const runtime = createScriptedRuntime();
  let reconciler: ReturnType<typeof createReconciler>;
  before(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, logger: createLogger({ name: "test", level: "silent" }) });
    sql = createSql(database.orm);
    reconciler = createReconciler({
      sql,
      runtimes: new Map([["local", runtime.backend]]),
      logger: createLogger({ name: "test", level: "silent" }),
      completionWaitMs: 10,
      defaultGraceMs: 10,
      onFinalized: () => {},
    });
  });
  after(async () => {
    reconciler.close();
    await database.close();
    await testDb.drop();
  });

  const statusOf = async (runId: string) => (await sql.one<{ status: string; reason: string | null }>("select status, reason from runs where id = ?", [runId]))!;

  it("is not taken as missing while the launch may still record it: a successful agent's run completes once it does", async () => {
    const runId = await seedRunningRun(sql, { handle: null });
    await sql.run("insert into completions (run_id, attempt, idempotency_key, status, result, conflict) values (?, 1, 'k', 'succeeded', '{}', false)", [runId]);
    for (let pass = 0; pass < 3; pass++) {
      await reconciler.reconcileRun(runId);
      assert.equal((await statusOf(runId)).status, "running", "undecided while the handle may still come");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await sql.run(`update attempts set runtime_handle = '{"pid":1}'::jsonb where run_id = ?`, [runId]);
    runtime.set(runId, "succeeded");
    await reconciler.reconcileRun(runId);
    assert.equal((await statusOf(runId)).status, "completed");
  });

  it("is taken as missing once the attach timeout has passed since the launch: the run fails, saying so", async () => {
    const runId = await seedRunningRun(sql, { handle: null, launchedAt: "now() - interval '3 minutes'" });
    await sql.run("insert into completions (run_id, attempt, idempotency_key, status, result, conflict) values (?, 1, 'k', 'succeeded', '{}', false)", [runId]);
    await reconciler.reconcileRun(runId);
    const { status, reason } = await statusOf(runId);
    assert.equal(status, "failed");
    assert.match(reason!, /no record of its process.*never started/);
  });
});
