import pg from "pg";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { startScheduler, type Scheduler } from "@corral/scheduler/start-scheduler.ts";
import { createTestDatabase, type TestDatabase } from "../test/support/postgres.ts";
import { createBenchNoopRuntime } from "./noop-runtime.ts";
import type { Figure } from "./stats.ts";

const REPOSITORIES = 50;

/**
 * P7: queued runs admitted and launched per second by 1 and by 3 scheduler replicas sharing one
 * database, with a runtime that launches nothing (bench/noop-runtime.ts), so the figure is the
 * schedulers' own. `runs` runs over 50 repositories are queued in one statement, then one
 * NOTIFY (what SubmitRun sends) sets every replica dispatching; the clock stops when the last
 * attempt has its runtime handle. Beside it, on the same database: one-row INSERT transactions
 * per second from one client, PostgreSQL's own pace for tiny transactions.
 */
export async function benchAdmission(options: { runs: number }): Promise<Figure[]> {
  const baseline = await tinyTransactionsPerSecond(Math.min(options.runs, 2000));
  const one = await admissionRate(1, options.runs);
  const three = await admissionRate(3, options.runs);
  const name = { name: "one-row INSERT transactions per second, one client", value: baseline };
  return [
    { name: `runs admitted and launched, 1 scheduler (${options.runs} runs, no-op runtime)`, value: one, unit: "runs/s", baseline: name, target: { text: "≥ 500 runs/s", met: one >= 500 } },
    { name: `runs admitted and launched, 3 schedulers (${options.runs} runs, no-op runtime)`, value: three, unit: "runs/s", baseline: name, target: { text: "≥ 500 runs/s", met: three >= 500 } },
  ];
}

async function admissionRate(replicas: number, runs: number): Promise<number> {
  const database = await createTestDatabase();
  const schedulers: Scheduler[] = [];
  try {
    const config = loadConfig(schedulerConfig, {
      DATABASE_URL: database.url,
      CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0",
      CORRAL_CONTROL_PLANE_URL: "http://127.0.0.1:1",
      CORRAL_MAX_CONCURRENT_RUNS: String(runs),
      CORRAL_MAX_RUNS_PER_REPOSITORY: String(runs),
      CORRAL_LOCAL_WARM_AGENTS: "0",
      // Only the NOTIFY starts dispatch: no sweep during the measurement.
      CORRAL_RECONCILE_INTERVAL: "1h",
      CORRAL_LOG_LEVEL: "warn",
    });
    for (let i = 0; i < replicas; i++) {
      schedulers.push(await startScheduler(config, createLogger({ name: "scheduler", level: "warn" }), { runtimes: [createBenchNoopRuntime()] }));
    }
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await queueRuns(client, runs);
      const started = performance.now();
      await client.query("select pg_notify('corral_run_queued', 'bench')");
      for (;;) {
        const { rows } = await client.query<{ n: string }>("select count(*) as n from attempts where runtime_handle is not null");
        if (Number(rows[0]!.n) >= runs) break;
        if (performance.now() - started > 300_000) throw new Error(`only ${rows[0]!.n} of ${runs} runs launched in 5 minutes`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const rate = runs / ((performance.now() - started) / 1000);
      const { rows } = await client.query<{ attempts: string; runs: string }>("select count(*) as attempts, count(distinct run_id) as runs from attempts");
      if (rows[0]!.attempts !== rows[0]!.runs) throw new Error(`${rows[0]!.attempts} attempts for ${rows[0]!.runs} runs: a run was launched twice`);
      console.log(`bench: ${replicas} scheduler(s) admitted and launched ${runs} runs at ${Math.round(rate)} runs/s`);
      return rate;
    } finally {
      await client.end();
    }
  } finally {
    for (const scheduler of schedulers) await scheduler.close(100);
    await database.drop();
  }
}

async function queueRuns(client: pg.Client, runs: number): Promise<void> {
  const spec = { repositoryUrl: "file:///srv/git/app.git", baseRef: "main", agent: { commandTemplate: "true", prompt: "bench" }, timeouts: { run: "3600s", grace: "5s" } };
  await client.query(
    `insert into runs (status, runtime, repository_url, base_ref, spec, created_at)
     select 'queued', 'local', 'file:///srv/git/app-' || (i % $3) || '.git', 'main', $1::jsonb, clock_timestamp() from generate_series(1, $2) as i`,
    [JSON.stringify(spec), runs, REPOSITORIES],
  );
}

async function tinyTransactionsPerSecond(count: number): Promise<number> {
  const database: TestDatabase = await createTestDatabase();
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query("create table bench_tiny (id bigserial primary key, at timestamptz not null default now())");
    const started = performance.now();
    for (let i = 0; i < count; i++) await client.query("insert into bench_tiny default values");
    return count / ((performance.now() - started) / 1000);
  } finally {
    await client.end();
    await database.drop();
  }
}
