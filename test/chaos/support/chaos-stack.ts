import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RunEventSchema } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { RunService, RunStatus, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { startScheduler, type Scheduler } from "@corral/scheduler/start-scheduler.ts";
import { startArtifactService, type ArtifactServiceFixture } from "../../support/artifact-service.ts";
import { waitFor as waitForValue } from "../../support/wait-for.ts";

export const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];
const logger = (name: string) => createLogger({ name, level: process.env.TEST_LOG_LEVEL ?? "silent" });

export interface ChaosScheduler {
  readonly scheduler: Scheduler;
  readonly client: Client<typeof RunService>;
  readonly sql: Sql;
  /** Stops the scheduler (its agents keep running) and starts another on the same port. */
  restart(): Promise<void>;
  /** Where attempts' work directories and agent logs (`<run id>/<attempt>.agent.log`) are. */
  readonly workRoot: string;
  /** `keep`: leave the work root (agent logs) for a look after a failure. */
  close(keep?: boolean): Promise<void>;
}

/**
 * A scheduler (in this process, launching real agent processes through the local runtime)
 * against a control plane given by URL, which the chaos tests run as their own processes.
 */
export async function startChaosScheduler(options: {
  databaseUrl: string;
  controlPlaneUrl: string;
  env?: Record<string, string>;
  agentEnv?: Record<string, string>;
}): Promise<ChaosScheduler> {
  const workRoot = await mkdtemp(join(tmpdir(), "corral-chaos-"));
  await chmod(workRoot, 0o755);
  const config = (listen: string) =>
    loadConfig(schedulerConfig, {
      DATABASE_URL: options.databaseUrl,
      CORRAL_SCHEDULER_LISTEN: listen,
      CORRAL_CONTROL_PLANE_URL: options.controlPlaneUrl,
      CORRAL_WORK_ROOT: workRoot,
      CORRAL_COMPLETION_WAIT: "1s",
      CORRAL_RECONCILE_INTERVAL: "500ms",
      CORRAL_DEFAULT_GRACE: "2s",
      CORRAL_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
      ...options.env,
    });
  // Agents find the control plane again quickly after it comes back.
  const agentEnv = { CORRAL_RECONNECT_MAX_DELAY: "500ms", CORRAL_ARTIFACT_UPLOAD_BUDGET: "20s", ...options.agentEnv };
  let scheduler = await startScheduler(config("127.0.0.1:0"), logger("scheduler"), { agentEnv });
  const client = createClient(RunService, createGrpcTransport({ baseUrl: scheduler.server.url }));
  return {
    get scheduler() {
      return scheduler;
    },
    client,
    workRoot,
    get sql() {
      return createSql(scheduler.database.orm);
    },
    async restart() {
      const port = scheduler.server.port;
      await scheduler.close(100);
      scheduler = await startScheduler(config(`127.0.0.1:${port}`), logger("scheduler"), { agentEnv });
    },
    async close(keep = false) {
      // Agents outlive a scheduler on purpose; a test's must not outlive the test.
      const handles = await createSql(scheduler.database.orm)
        .all<{ pid: number | null }>("select (runtime_handle->>'pid')::int as pid from attempts where status <> 'finished' and runtime_handle is not null")
        .catch(() => []);
      for (const { pid } of handles) {
        try {
          if (pid) process.kill(-pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await scheduler.close(1000);
      if (!keep) await rm(workRoot, { recursive: true, force: true });
    },
  };
}

export { startArtifactService, type ArtifactServiceFixture };

/** A run status's name, for printed figures. */
export const statusName = (status: RunStatus): string => Object.entries(RunStatus).find(([, value]) => value === status)?.[0] ?? String(status);

/** Polls GetRun until the run is terminal. */
export async function settle(client: Client<typeof RunService>, runId: string, timeoutMs = 120_000): Promise<Run> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = (await client.getRun({ runId }).catch(() => undefined))?.run;
    if (run && TERMINAL.includes(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} is not terminal after ${timeoutMs} ms (${run ? statusName(run.status) : "unreachable"})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** waitFor, with a failing check counted as "not yet": a process being killed and restarted may refuse a call. */
export const waitFor = <T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> =>
  waitForValue(() => check().catch(() => undefined), what, timeoutMs, 50);

export interface StoredEvents {
  count: number;
  maxSequence: number;
  /** Sequences 1..count, each once. */
  contiguous: boolean;
  /** The bytes of the step's stdout log chunks, in sequence order. */
  stdout: Buffer;
  types: Map<string, number>;
}

/** What the events table holds for one attempt of a run. */
export async function storedEvents(sql: Sql, runId: string, step = "agent"): Promise<StoredEvents> {
  const rows = await sql.all<{ sequence: string; type: string; payload: Buffer }>(
    "select sequence, type, payload from events where run_id = ? and attempt = 1 order by sequence",
    [runId],
  );
  const parts: Buffer[] = [];
  const types = new Map<string, number>();
  let contiguous = true;
  rows.forEach((row, i) => {
    if (Number(row.sequence) !== i + 1) contiguous = false;
    types.set(row.type, (types.get(row.type) ?? 0) + 1);
    if (row.type !== "log.chunk") return;
    const event = fromBinary(RunEventSchema, row.payload);
    if (event.payload.case === "logChunk" && event.payload.value.step === step && event.payload.value.stream === 1) parts.push(Buffer.from(event.payload.value.data));
  });
  return { count: rows.length, maxSequence: Number(rows.at(-1)?.sequence ?? 0), contiguous, stdout: Buffer.concat(parts), types };
}
