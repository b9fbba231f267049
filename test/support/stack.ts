import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { startControlPlane, type ControlPlane } from "@corral/control-plane/start-control-plane.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { startScheduler, type Scheduler } from "@corral/scheduler/start-scheduler.ts";
import { deadUrl, startArtifactService, type ArtifactServiceFixture } from "./artifact-service.ts";
import { createTestDatabase, type TestDatabase } from "./postgres.ts";

export interface StackFixture {
  client: Client<typeof RunService>;
  sql: Sql;
  scheduler: Scheduler;
  controlPlane: ControlPlane;
  /** The artifact service the control plane hands to agents; undefined with `artifacts: "down"`. */
  artifacts: ArtifactServiceFixture | undefined;
  workRoot: string;
  /** Stops the control plane, and starts a new one on the same port and database. */
  restartControlPlane(): Promise<void>;
  /** Stops the scheduler (its agents keep running), and starts a new one on the same port and database. */
  restartScheduler(): Promise<void>;
  /** Another scheduler replica on the same database and control plane, on its own port; closed with the stack. */
  startSchedulerReplica(): Promise<Scheduler>;
  close(): Promise<void>;
}

const logger = () => createLogger({ name: "stack", level: process.env.TEST_LOG_LEVEL ?? "silent" });

export interface StackOptions {
  /** Environment of every agent the local runtime starts (agent knobs such as CORRAL_RUN_LOG_FLUSH_INTERVAL). */
  agentEnv?: Record<string, string>;
  /** "down": agents are given the URL of an artifact service that is not there. */
  artifacts?: "up" | "down";
}

/**
 * The real scheduler, control plane and artifact service on one fresh database, launching real
 * agent processes through the local runtime; the control plane hands the artifact service's
 * URL to agents (CORRAL_ARTIFACT_URL), as `corral up` does. Short leases and windows keep
 * failure scenarios quick.
 */
export async function startStackFixture(env: Record<string, string> = {}, options: StackOptions = {}): Promise<StackFixture> {
  const database: TestDatabase = await createTestDatabase();
  const workRoot = await mkdtemp(join(tmpdir(), "corral-work-"));
  await chmod(workRoot, 0o755);
  // The same environment as the other services: telemetry (OTEL_*, CORRAL_ARTIFACT_METRICS_LISTEN) and limits.
  const artifacts = options.artifacts === "down" ? undefined : await startArtifactService(database.url, env);
  const controlPlaneEnv = {
    DATABASE_URL: database.url,
    CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
    CORRAL_ARTIFACT_URL: artifacts?.url ?? (await deadUrl()),
    CORRAL_HEARTBEAT_INTERVAL: "500ms",
    CORRAL_LEASE_DURATION: "3s",
    ...env,
  };
  let controlPlane = await startControlPlane(loadConfig(controlPlaneConfig, controlPlaneEnv), logger());
  const controlPlaneUrl = controlPlane.server.url;
  const schedulerEnv = (listen: string) =>
    loadConfig(schedulerConfig, {
      DATABASE_URL: database.url,
      CORRAL_SCHEDULER_LISTEN: listen,
      CORRAL_CONTROL_PLANE_URL: controlPlaneUrl,
      CORRAL_WORK_ROOT: workRoot,
      CORRAL_COMPLETION_WAIT: "1s",
      CORRAL_RECONCILE_INTERVAL: "500ms",
      CORRAL_DEFAULT_GRACE: "2s",
      CORRAL_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
      ...env,
    });
  const agentEnv = options.agentEnv ?? {};
  let scheduler = await startScheduler(schedulerEnv("127.0.0.1:0"), logger(), { agentEnv });
  const replicas: Scheduler[] = [];
  return {
    async startSchedulerReplica() {
      const replica = await startScheduler(schedulerEnv("127.0.0.1:0"), logger(), { agentEnv });
      replicas.push(replica);
      return replica;
    },
    client: createClient(RunService, createGrpcTransport({ baseUrl: scheduler.server.url })),
    get sql() {
      return createSql(scheduler.database.orm);
    },
    get scheduler() {
      return scheduler;
    },
    get controlPlane() {
      return controlPlane;
    },
    artifacts,
    workRoot,
    async restartControlPlane() {
      const port = controlPlane.server.port;
      await controlPlane.close(100);
      controlPlane = await startControlPlane(loadConfig(controlPlaneConfig, { ...controlPlaneEnv, CORRAL_CONTROL_PLANE_LISTEN: `127.0.0.1:${port}` }), logger());
    },
    async restartScheduler() {
      const port = scheduler.server.port;
      await scheduler.close(100);
      scheduler = await startScheduler(schedulerEnv(`127.0.0.1:${port}`), logger(), { agentEnv });
    },
    async close() {
      // Agents outlive a scheduler on purpose; a test's must not outlive the test.
      const handles = await createSql(scheduler.database.orm).all<{ pid: number | null }>(
        "select (runtime_handle->>'pid')::int as pid from attempts where status <> 'finished' and runtime_handle is not null",
      );
      for (const { pid } of handles) {
        try {
          if (pid) process.kill(-pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      for (const replica of replicas) await replica.close(1000).catch(() => undefined);
      await scheduler.close(1000);
      await controlPlane.close(1000);
      await artifacts?.close();
      await database.drop();
      await rm(workRoot, { recursive: true, force: true });
    },
  };
}
