import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createPgListener } from "@corral/plumbing/db/pg-listener.ts";
import { createSql } from "@corral/plumbing/db/sql.ts";
import { createLeaderLock } from "@corral/plumbing/db/leader-lock.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { startService, type RunningService } from "@corral/plumbing/start-service.ts";
import { createTelemetry } from "@corral/plumbing/telemetry/create-telemetry.ts";
import { telemetryEnv } from "@corral/plumbing/telemetry/telemetry-config.ts";
import type { SchedulerConfig } from "./config.ts";
import { createDispatcher } from "./dispatch/dispatcher.ts";
import { createReconciler } from "./reconcile/reconciler.ts";
import { createRunNotifier } from "./runs/run-notifier.ts";
import { createRunService } from "./runs/run-service.ts";
import { createRunStore, type RunStore } from "./runs/run-store.ts";
import type { SchedulerDefaults } from "./runs/validated-submission.ts";
import { createLocalRuntime } from "./runtime/local-runtime.ts";
import type { RuntimeBackend } from "./runtime/runtime-backend.ts";
import { createRuntimeStatus } from "./runtime/runtime-status.ts";
import { createDockerRuntime } from "./runtime/docker/docker-runtime.ts";
import { dockerSettings } from "./runtime/docker/docker-settings.ts";
import { createKubernetesRuntime } from "./runtime/kubernetes/kubernetes-runtime.ts";
import { kubernetesSettings } from "./runtime/kubernetes/kubernetes-settings.ts";
import { createSchedulerMetrics, observeRunCounts } from "./telemetry/scheduler-metrics.ts";

// The advisory lock whose holder is the reconciling scheduler ("corral reconciler").
const RECONCILER_LOCK = 0x636f7265;

export interface Scheduler extends RunningService {
  readonly runtimes: ReadonlyMap<string, RuntimeBackend>;
  /** Whether this replica is the one reconciling runs now. */
  isReconcilerLeader(): boolean;
}

export async function startScheduler(config: SchedulerConfig, logger: Logger, options: { agentEnv?: Record<string, string>; runtimes?: RuntimeBackend[] } = {}): Promise<Scheduler> {
  if (!config.CORRAL_RUNTIMES.includes(config.CORRAL_DEFAULT_RUNTIME)) {
    throw new Error(`CORRAL_DEFAULT_RUNTIME: ${config.CORRAL_DEFAULT_RUNTIME} is not among CORRAL_RUNTIMES (${config.CORRAL_RUNTIMES.join(", ")})`);
  }
  const defaults: SchedulerDefaults = {
    runtime: config.CORRAL_DEFAULT_RUNTIME,
    enabledRuntimes: config.CORRAL_RUNTIMES,
    timeouts: {
      runMs: config.CORRAL_DEFAULT_RUN_TIMEOUT,
      stepMs: config.CORRAL_DEFAULT_STEP_TIMEOUT,
      cloneMs: config.CORRAL_DEFAULT_CLONE_TIMEOUT,
      graceMs: config.CORRAL_DEFAULT_GRACE,
    },
    commitAuthor: { name: config.CORRAL_COMMIT_AUTHOR_NAME, email: config.CORRAL_COMMIT_AUTHOR_EMAIL },
  };

  const metricsListen = config.CORRAL_SCHEDULER_METRICS_LISTEN;
  const telemetry = createTelemetry({ serviceName: "corral-scheduler", config, metrics: metricsListen !== undefined, postgres: true });
  const { tracer } = telemetry;
  const metrics = createSchedulerMetrics(telemetry.meter);
  const listener = createPgListener({ url: config.DATABASE_URL, logger });
  const notifier = await createRunNotifier(listener, ["corral_run_events", "corral_run_changed"]);
  let store: RunStore | undefined;
  let service: RunningService;
  // Filled in below, once the service is up; ListRuntimes reports runtimes not yet there as starting.
  const runtimes = new Map<string, RuntimeBackend>();
  const runtimeStatus = createRuntimeStatus({ enabled: config.CORRAL_RUNTIMES, defaultRuntime: config.CORRAL_DEFAULT_RUNTIME, backends: runtimes });
  try {
    service = await startService({
      name: "scheduler",
      listen: config.CORRAL_SCHEDULER_LISTEN,
      databaseUrl: config.DATABASE_URL,
      logger,
      services: [RunService],
      telemetry,
      metricsListen,
      routes: (router, database) => {
        store = createRunStore(createSql(database.orm));
        router.service(RunService, createRunService({ store, notifier, defaults, runtimeStatus, tracer: telemetry.tracing ? tracer : undefined, metrics }));
      },
    });
  } catch (error) {
    await listener.close();
    throw error;
  }

  // Created once the service is up: the warm pool starts agent processes right away.
  // Agents export their spans where the scheduler does (OTEL_*, less the service name).
  const agentEnv = { CORRAL_LOG_LEVEL: config.CORRAL_LOG_LEVEL, ...telemetryEnv(config), ...options.agentEnv };
  try {
    if (config.CORRAL_RUNTIMES.includes("local")) {
      runtimes.set(
        "local",
        createLocalRuntime({
          workRoot: config.CORRAL_WORK_ROOT,
          agentCommand: config.CORRAL_AGENT_COMMAND?.split(" ").filter(Boolean),
          logger,
          agentEnv,
          warmAgents: config.CORRAL_LOCAL_WARM_AGENTS,
        }),
      );
    }
    if (config.CORRAL_RUNTIMES.includes("docker")) {
      runtimes.set("docker", createDockerRuntime({ ...dockerSettings(config, { CORRAL_LOG_LEVEL: config.CORRAL_LOG_LEVEL, ...telemetryEnv(config) }), logger }));
    }
    if (config.CORRAL_RUNTIMES.includes("kubernetes")) {
      runtimes.set("kubernetes", createKubernetesRuntime({ ...kubernetesSettings(config, { CORRAL_LOG_LEVEL: config.CORRAL_LOG_LEVEL, ...telemetryEnv(config) }), logger }));
    }
    // Backends given by the caller stand in for the configured ones of the same name (a benchmark's no-op runtime).
    for (const backend of options.runtimes ?? []) {
      await runtimes.get(backend.name)?.close();
      runtimes.set(backend.name, backend);
    }
    // A runtime that cannot launch is a configuration problem: say what to fix now, not at the first run.
    for (const backend of runtimes.values()) {
      const { ok, message } = await backend.preflight();
      if (!ok) throw new Error(`runtime ${backend.name} failed its preflight: ${message}`);
      logger.info({ runtime: backend.name }, message);
    }
  } catch (error) {
    for (const backend of runtimes.values()) await backend.close();
    await service.close(0);
    await listener.close();
    throw error;
  }
  const sql = createSql(service.database.orm);
  observeRunCounts(telemetry.meter, sql);
  // One reconciler among scheduler replicas; admission needs none (it locks per transaction).
  const leaderLock = createLeaderLock({ url: config.DATABASE_URL, key: RECONCILER_LOCK, logger });
  const reconciler = createReconciler({
    isLeader: leaderLock.isLeader,
    sql,
    runtimes,
    logger,
    completionWaitMs: config.CORRAL_COMPLETION_WAIT,
    defaultGraceMs: config.CORRAL_DEFAULT_GRACE,
    onFinalized: () => void dispatcher.kick(),
    tracer: telemetry.tracing ? tracer : undefined,
    metrics,
  });
  const dispatcher = createDispatcher({
    sql,
    runtimes,
    logger,
    controlPlaneUrl: config.CORRAL_CONTROL_PLANE_URL,
    maxConcurrentRuns: config.CORRAL_MAX_CONCURRENT_RUNS,
    maxRunsPerRepository: config.CORRAL_MAX_RUNS_PER_REPOSITORY,
    onLaunchFailed: (runId, attempt, reason) => reconciler.failLaunch(runId, attempt, reason),
    tracer: telemetry.tracing ? tracer : undefined,
    metrics,
  });

  // Edge triggers make things fast; the periodic sweep makes them certain. A fact seen by a
  // replica that does not lead is passed to the leader as a change of the run.
  for (const backend of runtimes.values()) {
    backend.onFact((runId) => {
      if (leaderLock.isLeader()) void reconciler.reconcileRun(runId);
      else void sql.run("select pg_notify('corral_run_changed', ?)", [runId]).catch((error: unknown) => logger.warn({ err: error, runId }, "could not pass a runtime fact on"));
    });
  }
  await listener.on("corral_run_queued", () => void dispatcher.kick());
  await listener.on("corral_completion", (runId) => void reconciler.reconcileRun(runId));
  // A cancel request, an attach: the run's evidence changed.
  await listener.on("corral_run_changed", (runId) => void reconciler.reconcileRun(runId));
  const sweep = () => {
    void reconciler.sweep().catch((error: unknown) => logger.error({ err: error }, "reconciliation sweep failed"));
    void dispatcher.kick();
  };
  const timer = setInterval(sweep, config.CORRAL_RECONCILE_INTERVAL);
  // A new leader looks at everything at once rather than at the next tick.
  leaderLock.onChange((leader) => leader && sweep());
  sweep();

  return {
    ...service,
    runtimes,
    isReconcilerLeader: leaderLock.isLeader,
    async close(graceMs) {
      clearInterval(timer);
      reconciler.close();
      await dispatcher.close();
      await leaderLock.close();
      await service.close(graceMs);
      await listener.close();
      for (const backend of runtimes.values()) await backend.close();
    },
  };
}
