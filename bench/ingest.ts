import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { seedLaunchedRun } from "../test/support/seed-run.ts";
import { startControlPlaneFixture } from "../test/support/control-plane.ts";
import type { IngestJob } from "./ingest-agents.ts";
import { percentile, type Figure } from "./stats.ts";

const PAYLOAD = "x".repeat(80);

/**
 * Events persisted and acked per second through Attach, on one stream and on 50 concurrent
 * streams, beside PostgreSQL's own COPY into a table shaped like `events` on the same database.
 * Each is measured after a warm-up through the same path (a fifth as many events or rows, not
 * counted): the figures are those of a control plane and agents that have been running a while,
 * not of their first second, when JIT compilation competes with them for the two cores and the
 * connection pool is still opening connections. The three are then measured in turn, round
 * after round, and each figure is its median: whatever else loads the machine at a given moment
 * weighs on the baseline as much as on what it is compared with.
 */
export async function benchIngest(options: { events: number; streams: number; rounds?: number }): Promise<Figure[]> {
  const warmup = Math.ceil(options.events / 5);
  const perStream = Math.ceil(options.events / options.streams);
  const fx = await startControlPlaneFixture({ CORRAL_MAX_EVENTS_PER_SECOND: "10000000", CORRAL_MAX_EVENTS_BURST: "10000000" });
  const agents = startAgents(fx.url);
  try {
    await copyRowsPerSecond(fx.database.url, warmup);
    // Both shapes: the 50 streams also open the rest of the control plane's connection pool.
    await attachRate(fx, agents, 1, warmup);
    await attachRate(fx, agents, options.streams, Math.ceil(warmup / options.streams));
    const copy: number[] = [];
    const one: number[] = [];
    const many: number[] = [];
    for (let round = 0; round < (options.rounds ?? 3); round++) {
      copy.push(await copyRowsPerSecond(fx.database.url, options.events));
      one.push(await attachRate(fx, agents, 1, options.events));
      many.push(await attachRate(fx, agents, options.streams, perStream));
    }
    const show = (rates: number[]) => rates.map((r) => Math.round(r)).join(", ");
    console.log(`bench: ingest rounds: COPY ${show(copy)} rows/s; 1 stream ${show(one)}; ${options.streams} streams ${show(many)} events/s`);
    const copyRate = percentile(copy, 50);
    const oneStream = percentile(one, 50);
    const manyStreams = percentile(many, 50);
    const baseline = { name: "COPY rows/s", value: copyRate };
    const target = (rate: number) => ({ text: "≥ 50% of COPY", met: rate >= copyRate * 0.5 });
    return [
      { name: "event ingest, 1 stream", value: oneStream, unit: "events/s", baseline, target: target(oneStream) },
      { name: `event ingest, ${options.streams} streams`, value: manyStreams, unit: "events/s", baseline, target: target(manyStreams) },
    ];
  } finally {
    await agents.terminate();
    await fx.close();
  }
}

/** The bench agents' worker thread. */
function startAgents(url: string): Worker {
  return new Worker(new URL("./ingest-agents.ts", import.meta.url), { workerData: { url, payload: PAYLOAD } });
}

async function attachRate(fx: Awaited<ReturnType<typeof startControlPlaneFixture>>, agents: Worker, streams: number, perStream: number): Promise<number> {
  const runs = await Promise.all(Array.from({ length: streams }, () => seedLaunchedRun(fx.sql)));
  const job: IngestJob = { runs: runs.map((r) => ({ runId: r.runId, token: r.token })), perStream };
  agents.postMessage(job);
  const [answer] = (await once(agents, "message")) as [{ seconds: number } | { error: string }];
  if ("error" in answer) throw new Error(`bench agents failed: ${answer.error}`);
  return (streams * perStream) / answer.seconds;
}

async function copyRowsPerSecond(url: string, rows: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Same columns, defaults and unique key as events, and fresh; the run id points at a real run.
    await client.query("create table bench_copy (like events including all)");
    const run = await client.query<{ id: string }>(
      "insert into runs (status, runtime, repository_url, base_ref, spec) values ('running', 'local', 'file:///b', 'main', '{}') returning id",
    );
    const runId = run.rows[0]!.id;
    const now = new Date().toISOString();
    const payload = JSON.stringify({ progress: { message: PAYLOAD } }).replace(/\\/g, "\\\\");
    const started = performance.now();
    await pipeline(
      Readable.from(
        (function* () {
          for (let i = 1; i <= rows; i++) yield `${runId}\t1\t${i}\trun.progress\t${now}\t${payload}\n`;
        })(),
      ),
      client.query(copyFrom("copy bench_copy (run_id, attempt, sequence, type, occurred_at, payload) from stdin")),
    );
    const seconds = (performance.now() - started) / 1000;
    await client.query("drop table bench_copy");
    return rows / seconds;
  } finally {
    await client.end();
  }
}
