import type { z } from "zod";
import { ConfigError, loadConfig } from "./config.ts";
import { createLogger, type Logger } from "./logger.ts";

export interface StartedService {
  /** Drains and stops everything the service started. */
  close(graceMs?: number): Promise<void>;
}

export interface ServiceDefinition<Shape extends z.ZodRawShape> {
  /** Process name, such as "corral-scheduler"; prefixes start-up errors. */
  name: string;
  /** Environment variables the service reads, each validated. */
  config: Shape;
  /** Log level from the validated config. */
  logLevel(config: Readonly<z.infer<z.ZodObject<Shape>>>): string;
  start(config: Readonly<z.infer<z.ZodObject<Shape>>>, logger: Logger): Promise<StartedService & { server: { url: string }; metrics?: { url: string } | undefined }>;
}

/**
 * The life of a service process: validate the environment once (a bad variable stops
 * start-up with a message naming it), start, then drain gracefully on SIGTERM or SIGINT.
 * A second signal exits at once.
 */
export async function runServiceMain<Shape extends z.ZodRawShape>(definition: ServiceDefinition<Shape>): Promise<void> {
  let config: Readonly<z.infer<z.ZodObject<Shape>>>;
  try {
    config = loadConfig(definition.config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${definition.name}: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger({ name: definition.name, level: definition.logLevel(config) });
  let service: StartedService & { server: { url: string }; metrics?: { url: string } | undefined };
  try {
    service = await definition.start(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, "start-up failed");
    logger.flush();
    process.stderr.write(`${definition.name}: start-up failed: ${(error as Error).message}\n`);
    process.exit(1);
  }

  // A supervisor that spawned us with an IPC channel (`corral up`) learns our address here.
  process.send?.({ type: "ready", name: definition.name, url: service.server.url, ...(service.metrics ? { metricsUrl: service.metrics.url } : {}) });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal, exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "draining");
    service.close().then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "drain failed");
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // Started by a supervisor over IPC: if it goes away, nobody will stop us, so stop now.
  process.once("disconnect", () => {
    if (!stopping) stop("SIGTERM");
  });
}
