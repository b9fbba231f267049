import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import { startControlPlaneProcess, type ControlPlaneProcess } from "../test/support/control-plane-process.ts";
import { createTestDatabase } from "../test/support/postgres.ts";
import { CONTROL_PLANE_NODE_FLAGS } from "@corral/control-plane/node-flags.ts";
import type { Figure } from "./stats.ts";

const WORKERS = 4;

/**
 * P4 and P3: one control-plane process (its own OS process, as deployed) holding attached,
 * idle, heartbeating streams from lightweight protocol clients in worker processes, each stream
 * on its own HTTP/2 connection as separate agents would be.
 * - P4: the process's RSS at each step up to `streams`, beside its RSS holding none.
 * - P3: statements the process sends to PostgreSQL per idle attached run per minute (every
 *   node-postgres query counted inside the process), and per heartbeat interval for all of
 *   them, beside one lease UPDATE per stream per heartbeat (what renewing each stream on its
 *   own would cost).
 */
export async function benchAttached(options: {
  streams: number;
  steps: number[];
  heartbeatMs: number;
  idleWindowMs: number;
  /**
   * The control plane's Node flags; unset: the ones production starts it with (`corral up`, the
   * Deployment's NODE_OPTIONS: CONTROL_PLANE_NODE_FLAGS), so P4 measures the process as deployed.
   */
  nodeFlags?: readonly string[];
}): Promise<Figure[]> {
  const nodeFlags = options.nodeFlags ?? CONTROL_PLANE_NODE_FLAGS;
  const production = nodeFlags === CONTROL_PLANE_NODE_FLAGS;
  const startedAs = `${production ? "as in production: " : ""}node ${nodeFlags.length > 0 ? nodeFlags.join(" ") : "with no flags (V8 defaults)"}`;
  const database = await createTestDatabase();
  const dir = await mkdtemp(join(tmpdir(), "corral-bench-attached-"));
  let controlPlane: ControlPlaneProcess | undefined;
  const workers: ChildProcess[] = [];
  try {
    controlPlane = await startControlPlaneProcess(
      { DATABASE_URL: database.url, CORRAL_HEARTBEAT_INTERVAL: `${options.heartbeatMs}ms`, CORRAL_LEASE_DURATION: `${Math.max(30_000, 6 * options.heartbeatMs)}ms`, CORRAL_LOG_LEVEL: "warn" },
      join(dir, "control-plane.log"),
      undefined,
      { execArgv: [...nodeFlags, "--expose-gc", "--import", fileURLToPath(new URL("./count-pg-queries.ts", import.meta.url))] },
    );
    const cp = controlPlane;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleRss = rssMiB(cp.pid);
    const runs = await seedRuns(database.url, options.streams);
    for (let i = 0; i < WORKERS; i++) {
      const worker = fork(fileURLToPath(new URL("./attached-agents.ts", import.meta.url)), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      await once(worker, "message");
      workers.push(worker);
    }
    const figures: Figure[] = [];
    let attached = 0;
    for (const step of options.steps) {
      const add = runs.slice(attached, step);
      const shares = workers.map((_, w) => add.filter((_, i) => i % WORKERS === w));
      const answers = await Promise.all(
        workers.map(async (worker, w) => {
          worker.send({ type: "attach", job: { url: cp.url, runs: shares[w] } });
          const [answer] = (await once(worker, "message")) as [{ type: string; attached?: number; error?: string }];
          if (answer.type !== "attached") throw new Error(`bench agents failed: ${answer.error}`);
          return answer.attached!;
        }),
      );
      attached = answers.reduce((a, b) => a + b, 0);
      // Let a few heartbeat rounds pass, so the figure is that of streams being held, not opened.
      await new Promise((resolve) => setTimeout(resolve, 2 * options.heartbeatMs));
      const rss = rssMiB(cp.pid);
      const memory = await ask<{ usage: NodeJS.MemoryUsage; spaces: Record<string, number> }>(cp.child, "memory");
      const rssAfterGc = rssMiB(cp.pid);
      const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
      console.log(
        `bench: ${attached} attached idle streams, control plane started ${startedAs}: RSS ${rss.toFixed(0)} MiB; after a full GC ${rssAfterGc.toFixed(0)} MiB ` +
          `(heap used ${mib(memory.usage.heapUsed)} of ${mib(memory.usage.heapTotal)} MiB, external ${mib(memory.usage.external)} MiB, array buffers ${mib(memory.usage.arrayBuffers)} MiB; heap spaces, MiB: ${JSON.stringify(memory.spaces)})`,
      );
      if (step === options.steps.at(-1)) {
        figures.push({
          name: `control-plane RSS holding ${attached} idle attached streams (${startedAs})`,
          value: rss,
          unit: "MiB",
          baseline: { name: "RSS holding none", value: idleRss },
          // A short run (--quick) holds too few streams to judge the target.
          target: options.streams >= 2000 ? { text: "≥ 2,000 streams under 400 MiB", met: attached >= 2000 && rss <= 400 } : undefined,
        });
      }
    }

    // P3: nothing but heartbeats happens now; count what reaches PostgreSQL over the window.
    const before = (await ask<{ count: number }>(cp.child, "pg-count")).count;
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, options.idleWindowMs));
    const statements = (await ask<{ count: number }>(cp.child, "pg-count")).count - before;
    const minutes = (performance.now() - started) / 60_000;
    const intervals = (performance.now() - started) / options.heartbeatMs;
    const perRunMinute = statements / attached / minutes;
    const unbatchedPerRunMinute = 60_000 / options.heartbeatMs;
    console.log(`bench: ${statements} statements in ${(minutes * 60).toFixed(1)} s from ${attached} idle streams (heartbeat ${options.heartbeatMs} ms)`);
    figures.push(
      {
        name: `DB statements per idle attached run per minute (${attached} runs, heartbeat ${options.heartbeatMs / 1000} s)`,
        value: perRunMinute,
        unit: "stmts",
        baseline: { name: "one lease UPDATE per stream per heartbeat", value: unbatchedPerRunMinute },
      },
      {
        name: `DB statements per heartbeat interval, all ${attached} idle streams`,
        value: statements / intervals,
        unit: "stmts",
        baseline: { name: "one lease UPDATE per stream per heartbeat", value: attached },
        target: { text: "≤ 1 batched lease write", met: statements / intervals <= 1.05 },
      },
    );
    return figures;
  } finally {
    for (const worker of workers) {
      worker.send({ type: "stop" });
      await Promise.race([once(worker, "exit"), new Promise((resolve) => setTimeout(resolve, 3000))]);
      worker.kill("SIGKILL");
    }
    await controlPlane?.close();
    await database.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** Asks the module preloaded into the control plane (count-pg-queries.ts) over IPC. */
async function ask<T>(child: ChildProcess, type: string): Promise<T> {
  const answer = new Promise<T>((resolve) => {
    const onMessage = (message: { type?: string }) => {
      if (message.type !== type) return;
      child.off("message", onMessage);
      resolve(message as T);
    };
    child.on("message", onMessage);
  });
  child.send({ type });
  return answer;
}

/** Launched runs with their attempts and credentials, written the way the scheduler does, in three statements. */
async function seedRuns(url: string, count: number): Promise<{ runId: string; token: string }[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const spec = { repositoryUrl: "file:///srv/git/app.git", baseRef: "main", agent: { commandTemplate: "true", prompt: "idle" }, timeouts: { run: "3600s", grace: "5s" } };
    const { rows } = await client.query<{ id: string }>(
      `insert into runs (status, runtime, repository_url, base_ref, spec, current_attempt, launched_at)
       select 'launching', 'local', 'file:///srv/git/app.git', 'main', $1::jsonb, 1, now() from generate_series(1, $2) returning id`,
      [JSON.stringify(spec), count],
    );
    const ids = rows.map((row) => row.id);
    await client.query("insert into attempts (run_id, number, status, launched_at) select id, 1, 'launching', now() from unnest($1::uuid[]) as id", [ids]);
    const credentials = ids.map(() => mintCredential());
    await client.query(
      "insert into credentials (run_id, attempt, token_hash, expires_at) select id, 1, hash, now() + interval '1 hour' from unnest($1::uuid[], $2::text[]) as t(id, hash)",
      [ids, credentials.map((c) => c.hash)],
    );
    return ids.map((runId, i) => ({ runId, token: credentials[i]!.token }));
  } finally {
    await client.end();
  }
}
