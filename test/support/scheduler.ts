import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { startScheduler, type Scheduler } from "@corral/scheduler/start-scheduler.ts";
import { createTestDatabase, type TestDatabase } from "./postgres.ts";

export interface SchedulerFixture {
  scheduler: Scheduler;
  client: Client<typeof RunService>;
  sql: Sql;
  url: string;
  close(): Promise<void>;
}

/** A real scheduler on a free port; with its own fresh database unless one is given. */
export async function startSchedulerFixture(env: Record<string, string> = {}, database?: TestDatabase): Promise<SchedulerFixture> {
  const owned = database === undefined;
  const db = database ?? (await createTestDatabase());
  const config = loadConfig(schedulerConfig, { DATABASE_URL: db.url, CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0", ...env });
  const scheduler = await startScheduler(config, createLogger({ name: "scheduler", level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  return {
    scheduler,
    client: createClient(RunService, createGrpcTransport({ baseUrl: scheduler.server.url })),
    sql: createSql(scheduler.database.orm),
    url: scheduler.server.url,
    async close() {
      await scheduler.close(1000);
      if (owned) await db.drop();
    },
  };
}
