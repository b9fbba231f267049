import { RunnerService } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { startService, type RunningService } from "@corral/plumbing/start-service.ts";
import type { ControlPlaneConfig } from "./config.ts";

export function startControlPlane(config: ControlPlaneConfig, logger: Logger): Promise<RunningService> {
  return startService({
    name: "control-plane",
    listen: config.CORRAL_CONTROL_PLANE_LISTEN,
    databaseUrl: config.DATABASE_URL,
    logger,
    services: [RunnerService],
    // Attach arrives with the run slice; until then it answers UNIMPLEMENTED.
    routes: (router) => router.service(RunnerService, {}),
  });
}
