import assert from "node:assert/strict";
import { credentialMatches } from "@corral/plumbing/credentials.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { openDatabase, type Database } from "@corral/plumbing/db/open-database.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { createDispatcher } from "@corral/scheduler/dispatch/dispatcher.ts";
import type { LaunchRequest, RuntimeBackend } from "@corral/scheduler/runtime/runtime-backend.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

const logger = createLogger({ name: "test", level: "silent" });

/** A runtime whose sandboxes are entries in a list: the dispatcher's launches, seen from the runtime's side. */
function recordingRuntime() {
  const launches: LaunchRequest[] = [];
  const backend: RuntimeBackend = {
    name: "local",
    preflight: async () => ({ ok: true, message: "" }),
    launch: async (request) => {
      launches.push(request);
      return { pid: launches.length };
    },
    observe: async () => ({ fact: "running", detail: "" }),
    terminate: async () => {},
    cleanup: async () => {},
    onFact: () => {},
    close: async () => {},
  };
  return { backend, launches };
}

/** A dispatcher on `sql` launching through `backend` within the limits; a failed launch fails the test. */
const dispatcherOn = (sql: Sql, backend: RuntimeBackend, maxConcurrentRuns: number, maxRunsPerRepository: number) =>
  createDispatcher({
    sql,
    runtimes: new Map([["local", backend]]),
    logger,
    controlPlaneUrl: "http://127.0.0.1:1",
    maxConcurrentRuns,
    maxRunsPerRepository,
    onLaunchFailed: async (runId, _attempt, reason) => assert.fail(`launch of ${runId} failed: ${reason}`),
  });

describe("dispatcher: admission in batches", () => {
  let database: TestDatabase;
  let db: Database;
  let sql: Sql;
  before(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ url: database.url, logger });
    sql = createSql(db.orm);
  });
  after(async () => {
    await db.close();
    await database.drop();
  });

  async function queue(repositories: string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const repository of repositories) {
      const row = await sql.one<{ id: string }>(
        `insert into runs (status, runtime, repository_url, base_ref, spec, created_at)
         values ('queued', 'local', ?, 'main', '{"timeouts":{"run":"120s","grace":"3s"},"limits":{"cpuMillis":500}}'::jsonb, clock_timestamp()) returning id`,
        [`file:///srv/${repository}.git`],
      );
      ids.push(row!.id);
    }
    return ids;
  }

  it("admits in order within the global and per-repository limits counted across the batch, and writes each admission whole", async () => {
    await sql.run("delete from runs");
    const ids = await queue(["a", "a", "a", "b", "b", "b", "c", "c"]);
    const [a1, a2, a3, b1, b2, , c1, c2] = ids;
    const { backend, launches } = recordingRuntime();
    const dispatcher = dispatcherOn(sql, backend, 5, 2);
    await dispatcher.kick();
    assert.deepEqual(launches.map((l) => l.runId), [a1, a2, b1, b2, c1], "the third run of a repository waits; the global limit stops at five");
    const launch = launches[0]!;
    assert.equal(launch.attempt, 1);
    assert.deepEqual(launch.timeouts, { runMs: 120_000, graceMs: 3000 });
    assert.equal(launch.limits.cpuMillis, 500);
    for (const { runId, credential } of launches) {
      const row = await sql.one<{ status: string; current_attempt: number; handle: { pid: number } | null; hash: string; expires_ms: string }>(
        `select r.status, r.current_attempt, a.runtime_handle as handle, c.token_hash as hash,
                extract(epoch from c.expires_at - now()) * 1000 as expires_ms
           from runs r join attempts a on a.run_id = r.id and a.number = 1 join credentials c on c.run_id = r.id and c.attempt = 1
          where r.id = ?`,
        [runId],
      );
      assert.equal(row!.status, "launching");
      assert.equal(row!.current_attempt, 1);
      assert.ok(row!.handle?.pid, "the runtime's handle is kept");
      assert.ok(credentialMatches(credential, row!.hash), "the launched credential is the one stored (as its hash)");
      assert.ok(Number(row!.expires_ms) > 120_000 + 3_500_000, "it outlives the run's budget");
    }
    const queued = await sql.all<{ id: string }>("select id from runs where status = 'queued' order by created_at");
    assert.deepEqual(queued.map((r) => r.id), [a3, ids[5], c2]);

    // A run of repository a ends: its next run is admitted, and nothing else (the global limit).
    await sql.run("update runs set status = 'completed' where id = ?", [a1]);
    await dispatcher.kick();
    assert.deepEqual(launches.slice(5).map((l) => l.runId), [a3]);
  });

  it("three schedulers' dispatchers on their own connections, kicked together round after round: each run launched once, the limits never exceeded", async () => {
    await sql.run("delete from runs");
    // 20 repositories of 12 runs; at most 40 active, at most 3 per repository.
    const ids = await queue(Array.from({ length: 240 }, (_, i) => `contended-${i % 20}`));
    const replicas = await Promise.all([0, 1, 2].map(() => openDatabase({ url: database.url, logger })));
    try {
      const launched = new Map<string, number>();
      const dispatchers = replicas.map((replica) => {
        const { backend } = recordingRuntime();
        const origin = backend.launch;
        backend.launch = async (request) => {
          launched.set(request.runId, (launched.get(request.runId) ?? 0) + 1);
          return origin(request);
        };
        return dispatcherOn(createSql(replica.orm), backend, 40, 3);
      });
      let rounds = 0;
      for (;;) {
        await Promise.all(dispatchers.flatMap((dispatcher) => [dispatcher.kick(), dispatcher.kick()]));
        const active = await sql.all<{ repository_url: string; n: string }>(
          "select repository_url, count(*) as n from runs where status = 'launching' group by repository_url",
        );
        const total = active.reduce((sum, row) => sum + Number(row.n), 0);
        const queued = Number((await sql.one<{ n: string }>("select count(*) as n from runs where status = 'queued'"))!.n);
        assert.ok(total <= 40, `round ${rounds}: ${total} active runs`);
        for (const row of active) assert.ok(Number(row.n) <= 3, `round ${rounds}: ${row.n} active runs of ${row.repository_url}`);
        if (queued > 0) assert.equal(total, 40, `round ${rounds}: the queue is not empty, so the limit is filled`);
        if (total === 0 && queued === 0) break;
        // Half the active runs finish (the oldest), as if their agents completed.
        await sql.run(
          "update runs set status = 'completed' where id in (select id from runs where status = 'launching' order by launched_at, id limit ?)",
          [Math.ceil(total / 2)],
        );
        rounds += 1;
      }
      assert.deepEqual([...launched.keys()].sort(), [...ids].sort(), "every run launched");
      assert.deepEqual([...new Set(launched.values())], [1], "none twice");
      console.log(`      3 dispatchers, 240 runs: ${rounds} rounds, each run launched once, never more than 40 active nor 3 per repository`);
    } finally {
      for (const replica of replicas) await replica.close();
    }
  });

  it("claims more runs than one batch holds, over several transactions, each once", async () => {
    await sql.run("delete from runs");
    const ids = await queue(Array.from({ length: 150 }, (_, i) => `r${i % 7}`));
    const { backend, launches } = recordingRuntime();
    const dispatcher = dispatcherOn(sql, backend, 1000, 1000);
    await Promise.all([dispatcher.kick(), dispatcher.kick()]);
    assert.deepEqual(launches.map((l) => l.runId).sort(), [...ids].sort(), "every run once");
    const attempts = await sql.one<{ n: string }>("select count(*) as n from attempts");
    assert.equal(Number(attempts!.n), 150);
  });
  it("close() admits nothing more and waits for the launches under way to record their handles", async () => {
    await sql.run("delete from runs");
    const [first, second] = await queue(["slow", "slow-2"]);
    const { backend, launches } = recordingRuntime();
    const origin = backend.launch;
    const started = Promise.withResolvers<void>();
    backend.launch = async (request) => {
      started.resolve();
      await new Promise((resolve) => setTimeout(resolve, 300)); // a sandbox slow to create
      return origin(request);
    };
    const dispatcher = dispatcherOn(sql, backend, 1, 1);
    void dispatcher.kick();
    await started.promise;
    await dispatcher.close();
    const handle = await sql.one<{ runtime_handle: unknown }>("select runtime_handle from attempts where run_id = ?", [first]);
    assert.deepEqual(handle?.runtime_handle, { pid: 1 }, "the launch under way recorded its handle before close() returned");
    await sql.run("update runs set status = 'completed' where id = ?", [first]);
    await dispatcher.kick();
    assert.deepEqual(launches.map((l) => l.runId), [first], "nothing admitted after close()");
    assert.equal((await sql.one<{ status: string }>("select status from runs where id = ?", [second]))?.status, "queued");
  });
});
