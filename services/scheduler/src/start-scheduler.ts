import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { startService, type RunningService } from "@corral/plumbing/start-service.ts";
import type { SchedulerConfig } from "./config.ts";

export function startScheduler(config: SchedulerConfig, logger: Logger): Promise<RunningService> {
  return startService({
    name: "scheduler",
    listen: config.CORRAL_SCHEDULER_LISTEN,
    databaseUrl: config.DATABASE_URL,
    logger,
    services: [RunService],
    // The run API arrives with the run slice; until then every method answers UNIMPLEMENTED.
    routes: (router) => router.service(RunService, {}),
  });
}
