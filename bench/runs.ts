import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createSeededRemote } from "../test/agent/support/git-fixtures.ts";
import { startStackFixture, type StackFixture } from "../test/support/stack.ts";
import { percentile, type Figure } from "./stats.ts";

/**
 * Whole-run figures on the local runtime with real agent processes:
 * - cancel latency, CancelRun → the agent observing the cancel (its run.cancellation_observed
 *   event's timestamp), beside a bare PostgreSQL NOTIFY → LISTEN round trip;
 * - SubmitRun → agent attached, beside spawning `node -e 0`.
 */
export async function benchRuns(options: { cancels: number; submits: number }): Promise<Figure[]> {
  const root = await mkdtemp(join(tmpdir(), "corral-bench-"));
  const stack = await startStackFixture({ CORRAL_MAX_CONCURRENT_RUNS: "16", CORRAL_MAX_RUNS_PER_REPOSITORY: "16", CORRAL_LEASE_DURATION: "30s" });
  try {
    const remote = await createSeededRemote(root);
    const notify = await notifyRoundTrips(stack, options.cancels);
    const cancels = await cancelLatencies(stack, remote.url, options.cancels);
    const spawnMs = await bareSpawns(options.submits);
    const attach = await submitToAttached(stack, remote.url, options.submits);
    const cancelP99 = percentile(cancels, 99);
    return [
      { name: `cancel latency p50 (${cancels.length} cancels)`, value: percentile(cancels, 50), unit: "ms", baseline: { name: "NOTIFY round trip p50", value: percentile(notify, 50) } },
      {
        name: `cancel latency p99 (${cancels.length} cancels)`,
        value: cancelP99,
        unit: "ms",
        baseline: { name: "NOTIFY round trip p99", value: percentile(notify, 99) },
        target: { text: "≤ 50 ms", met: cancelP99 <= 50 },
      },
      {
        name: `submit → attached p50 (${attach.length} runs)`,
        value: percentile(attach, 50),
        unit: "ms",
        baseline: { name: "bare `node -e 0` spawn p50", value: percentile(spawnMs, 50) },
        target: { text: "≤ 2× bare spawn", met: percentile(attach, 50) <= 2 * percentile(spawnMs, 50) },
      },
      { name: `submit → attached p99 (${attach.length} runs)`, value: percentile(attach, 99), unit: "ms", baseline: { name: "bare `node -e 0` spawn p99", value: percentile(spawnMs, 99) } },
    ];
  } finally {
    await stack.close();
    await rm(root, { recursive: true, force: true });
  }
}

const sleepSpec = (url: string) => ({ repositoryUrl: url, baseRef: "main", agent: { commandTemplate: "sleep 600", prompt: "wait" } });

async function cancelLatencies(stack: StackFixture, url: string, count: number): Promise<number[]> {
  const latencies: number[] = [];
  const batch = 16;
  for (let done = 0; done < count; done += batch) {
    const size = Math.min(batch, count - done);
    const runs = await Promise.all(Array.from({ length: size }, () => stack.client.submitRun({ spec: sleepSpec(url) })));
    const ids = runs.map((r) => r.run!.id);
    await waitUntil(stack, ids, "current_step = 'agent'");
    for (const runId of ids) {
      const asked = Date.now();
      await stack.client.cancelRun({ runId, reason: "bench" });
      const observed = await waitForObserved(stack, runId);
      latencies.push(observed - asked);
    }
    await waitUntil(stack, ids, "status = 'cancelled'");
  }
  return latencies;
}

async function waitForObserved(stack: StackFixture, runId: string): Promise<number> {
  for (;;) {
    // occurred_at is the event's own time, stamped by the agent when it saw the cancel.
    const row = await stack.sql.one<{ at: string }>(
      "select extract(epoch from occurred_at) * 1000 as at from events where run_id = ? and type = 'run.cancellation_observed'",
      [runId],
    );
    if (row) return Number(row.at);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function submitToAttached(stack: StackFixture, url: string, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const { run } = await stack.client.submitRun({ spec: sleepSpec(url) });
    await waitUntil(stack, [run!.id], "attached_at is not null");
    const row = await stack.sql.one<{ ms: number }>(
      "select extract(epoch from (attached_at - created_at)) * 1000 as ms from runs where id = ?",
      [run!.id],
    );
    latencies.push(Number(row!.ms));
    await stack.client.cancelRun({ runId: run!.id, reason: "bench" });
    await waitUntil(stack, [run!.id], "status = 'cancelled'");
  }
  return latencies;
}

async function waitUntil(stack: StackFixture, ids: string[], condition: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const row = await stack.sql.one<{ n: string }>(`select count(*) as n from runs where id in (${ids.map(() => "?").join(",")}) and ${condition}`, ids);
    if (Number(row!.n) === ids.length) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function notifyRoundTrips(stack: StackFixture, count: number): Promise<number[]> {
  const url = (stack.scheduler.database.orm.config.get("clientUrl") as string);
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  await listener.query("listen bench_ping");
  const samples: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const heard = new Promise<void>((resolve) => listener.once("notification", () => resolve()));
      const started = performance.now();
      await stack.sql.run("select pg_notify('bench_ping', ?)", [String(i)]);
      await heard;
      samples.push(performance.now() - started);
    }
  } finally {
    await listener.end();
  }
  return samples;
}

async function bareSpawns(count: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
      child.once("exit", () => resolve());
      child.once("error", reject);
    });
    samples.push(performance.now() - started);
  }
  return samples;
}
