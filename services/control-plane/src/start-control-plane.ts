import { RunnerService } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { createPgListener } from "@corral/plumbing/db/pg-listener.ts";
import { createPgPool } from "@corral/plumbing/db/pg-pool.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { startService, type RunningService } from "@corral/plumbing/start-service.ts";
import { createTelemetry } from "@corral/plumbing/telemetry/create-telemetry.ts";
import { createAttemptStore } from "./attach/attempt-store.ts";
import { createLeaseRenewer } from "./attach/lease-renewer.ts";
import { createRunnerService } from "./attach/runner-service.ts";
import { createSessionRegistry, type SessionRegistry } from "./attach/session-registry.ts";
import type { ControlPlaneConfig } from "./config.ts";
import { createControlPlaneMetrics } from "./telemetry/control-plane-metrics.ts";

export interface ControlPlane extends RunningService {
  readonly registry: SessionRegistry;
}

export async function startControlPlane(config: ControlPlaneConfig, logger: Logger): Promise<ControlPlane> {
  const registry = createSessionRegistry();
  const metricsListen = config.CORRAL_CONTROL_PLANE_METRICS_LISTEN;
  const telemetry = createTelemetry({ serviceName: "corral-control-plane", config, metrics: metricsListen !== undefined, postgres: true });
  const metrics = createControlPlaneMetrics(telemetry.meter, registry);
  const pool = createPgPool(config.DATABASE_URL);
  const leases = createLeaseRenewer({ pool, leaseMs: config.CORRAL_LEASE_DURATION, intervalMs: config.CORRAL_HEARTBEAT_INTERVAL, logger });
  const service = await startService({
    name: "control-plane",
    listen: config.CORRAL_CONTROL_PLANE_LISTEN,
    databaseUrl: config.DATABASE_URL,
    logger,
    services: [RunnerService],
    readMaxBytes: config.CORRAL_MAX_MESSAGE_BYTES,
    telemetry,
    metricsListen,
    routes: (router, database) =>
      router.service(
        RunnerService,
        createRunnerService({ store: createAttemptStore(database.orm, pool), registry, config, logger, tracer: telemetry.tracing ? telemetry.tracer : undefined, metrics, leases }),
      ),
  });

  // Other replicas (and the scheduler) reach the streams held here through PostgreSQL.
  const listener = createPgListener({ url: config.DATABASE_URL, logger });
  try {
    await listener.on("corral_lease", (payload) => {
      const [attemptId, epoch] = payload.split(":");
      if (attemptId && epoch && /^\d+$/.test(epoch)) registry.leaseTaken(attemptId, BigInt(epoch));
    });
    await listener.on("corral_cancel", (payload) => {
      const cancel = parseCancel(payload);
      if (cancel) registry.cancelRun(cancel.runId, cancel.reason, cancel.graceMs);
      else logger.warn({ payload }, "ignoring a malformed cancel notification");
    });
  } catch (error) {
    await listener.close();
    await service.close();
    await leases.close();
    await pool.end();
    throw error;
  }

  return {
    ...service,
    registry,
    async close(graceMs) {
      await listener.close();
      await service.close(graceMs);
      await leases.close();
      await pool.end();
    },
  };
}

function parseCancel(payload: string): { runId: string; reason: string; graceMs?: number } | undefined {
  try {
    const value = JSON.parse(payload) as { runId?: unknown; reason?: unknown; graceMs?: unknown };
    if (typeof value.runId !== "string") return undefined;
    return {
      runId: value.runId,
      reason: typeof value.reason === "string" ? value.reason : "cancelled",
      graceMs: typeof value.graceMs === "number" ? value.graceMs : undefined,
    };
  } catch {
    return undefined;
  }
}
