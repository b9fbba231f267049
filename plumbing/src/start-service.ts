import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { openDatabase, type Database } from "./db/open-database.ts";
import type { Logger } from "./logger.ts";
import { startServer, type RunningServer } from "./server/create-server.ts";
import type { StartedService } from "./service-main.ts";

export interface ServiceOptions {
  name: string;
  listen: { host: string; port: number };
  databaseUrl: string;
  logger: Logger;
  services: DescService[];
  routes: (router: ConnectRouter, database: Database) => void;
  /** Largest message accepted, in bytes. */
  readMaxBytes?: number;
}

export interface RunningService extends StartedService {
  readonly server: RunningServer;
  readonly database: Database;
}

/**
 * What every Corral service does at start-up: open PostgreSQL and bring its schema up to
 * date, then serve its Connect services on one h2c port. Closing drains the server first,
 * so in-flight calls can still use the database.
 */
export async function startService(options: ServiceOptions): Promise<RunningService> {
  const database = await openDatabase({ url: options.databaseUrl, logger: options.logger });
  let server: RunningServer;
  try {
    server = await startServer({
      name: options.name,
      host: options.listen.host,
      port: options.listen.port,
      logger: options.logger,
      services: options.services,
      readMaxBytes: options.readMaxBytes,
      routes: (router) => options.routes(router, database),
    });
  } catch (error) {
    await database.close();
    throw error;
  }
  return {
    server,
    database,
    async close(graceMs) {
      await server.close(graceMs);
      await database.close();
    },
  };
}
