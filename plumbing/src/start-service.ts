import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { openDatabase, type Database } from "./db/open-database.ts";
import type { Logger } from "./logger.ts";
import { startServer, type RunningServer, type ServerTimeouts } from "./server/create-server.ts";
import { serverTimeoutsFromEnv } from "./server/server-timeouts.ts";
import type { StartedService } from "./service-main.ts";
import type { Telemetry } from "./telemetry/create-telemetry.ts";
import { serveMetrics, type MetricsServer } from "./telemetry/serve-metrics.ts";
import { createTracingInterceptor } from "./telemetry/tracing-interceptor.ts";

export interface ServiceOptions {
  name: string;
  listen: { host: string; port: number };
  databaseUrl: string;
  logger: Logger;
  services: DescService[];
  routes: (router: ConnectRouter, database: Database) => void;
  /** Largest message accepted, in bytes. */
  readMaxBytes?: number;
  /** Bounds on slow and idle clients; unset: CORRAL_HTTP_* from the environment, or their defaults. */
  timeouts?: ServerTimeouts;
  /** The service's tracer (a server span per call) and metrics; shut down with the service. */
  telemetry?: Telemetry;
  /** Where /metrics is served (HTTP/1.1); undefined: not served. */
  metricsListen?: { host: string; port: number };
}

export interface RunningService extends StartedService {
  readonly server: RunningServer;
  readonly database: Database;
  /** The Prometheus endpoint, when one is served. */
  readonly metrics: MetricsServer | undefined;
}

/**
 * What every Corral service does at start-up: open PostgreSQL and bring its schema up to
 * date, then serve its Connect services on one h2c port. Closing drains the server first,
 * so in-flight calls can still use the database.
 */
export async function startService(options: ServiceOptions): Promise<RunningService> {
  const { telemetry } = options;
  const database = await openDatabase({ url: options.databaseUrl, logger: options.logger });
  let server: RunningServer;
  let metrics: MetricsServer | undefined;
  try {
    server = await startServer({
      name: options.name,
      host: options.listen.host,
      port: options.listen.port,
      logger: options.logger,
      services: options.services,
      readMaxBytes: options.readMaxBytes,
      timeouts: options.timeouts ?? serverTimeoutsFromEnv(),
      routes: (router) => options.routes(router, database),
      interceptors: telemetry ? [createTracingInterceptor({ tracer: telemetry.tracer, enabled: telemetry.tracing, side: "server" })] : [],
    });
  } catch (error) {
    await database.close();
    await telemetry?.shutdown();
    throw error;
  }
  try {
    if (options.metricsListen && telemetry?.prometheus) {
      metrics = await serveMetrics({ ...options.metricsListen, exporter: telemetry.prometheus, logger: options.logger });
    }
  } catch (error) {
    await server.close(0);
    await database.close();
    await telemetry?.shutdown();
    throw new Error(`cannot serve metrics on ${options.metricsListen!.host}:${options.metricsListen!.port}: ${(error as Error).message}`);
  }
  return {
    server,
    database,
    metrics,
    async close(graceMs) {
      await server.close(graceMs);
      await metrics?.close();
      await database.close();
      // Last: the drain's own spans are exported too.
      await telemetry?.shutdown();
    },
  };
}
