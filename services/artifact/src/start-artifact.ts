import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { startService, type RunningService } from "@corral/plumbing/start-service.ts";
import type { ArtifactConfig } from "./config.ts";

export function startArtifact(config: ArtifactConfig, logger: Logger): Promise<RunningService> {
  return startService({
    name: "artifact",
    listen: config.CORRAL_ARTIFACT_LISTEN,
    databaseUrl: config.DATABASE_URL,
    logger,
    services: [ArtifactService],
    // Uploads and downloads arrive with the artifact issue; until then they answer UNIMPLEMENTED.
    routes: (router) => router.service(ArtifactService, {}),
  });
}
