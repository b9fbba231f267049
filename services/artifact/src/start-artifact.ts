import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createPgListener } from "@corral/plumbing/db/pg-listener.ts";
import { createSql } from "@corral/plumbing/db/sql.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { startService, type RunningService } from "@corral/plumbing/start-service.ts";
import { createTelemetry } from "@corral/plumbing/telemetry/create-telemetry.ts";
import { createArtifactService } from "./artifact-service.ts";
import { createArtifactStore, UPLOAD_CHANNEL, type ArtifactStore } from "./artifacts/artifact-store.ts";
import { createAuthenticator } from "./auth/create-authenticator.ts";
import type { ArtifactConfig } from "./config.ts";
import { createUploadWatch, type UploadWatch } from "./downloads/upload-watch.ts";
import type { BlobStore } from "./storage/blob-store.ts";
import { createRetentionStore } from "./retention/retention-store.ts";
import { createRetentionSweeper, type RetentionSweeper } from "./retention/create-retention-sweeper.ts";
import { createFilesystemBlobStore } from "./storage/filesystem-blob-store.ts";
import { createArtifactMetrics } from "./telemetry/artifact-metrics.ts";
import { createWriterRegistry, type WriterRegistry } from "./uploads/writer-registry.ts";

export interface ArtifactServer extends RunningService {
  readonly blobs: BlobStore;
  readonly watch: UploadWatch;
  readonly writers: WriterRegistry;
  readonly sweeper: RetentionSweeper;
}

export async function startArtifact(config: ArtifactConfig, logger: Logger): Promise<ArtifactServer> {
  // Before serving: a store directory that cannot be created stops start-up with its reason.
  const blobs = await createFilesystemBlobStore({ root: config.CORRAL_ARTIFACT_DIR });
  const watch = createUploadWatch();
  const writers = createWriterRegistry();
  let store: ArtifactStore | undefined;
  const metricsListen = config.CORRAL_ARTIFACT_METRICS_LISTEN;
  const telemetry = createTelemetry({ serviceName: "corral-artifact", config, metrics: metricsListen !== undefined, postgres: true });
  const metrics = createArtifactMetrics(telemetry.meter);
  const service = await startService({
    name: "artifact",
    listen: config.CORRAL_ARTIFACT_LISTEN,
    databaseUrl: config.DATABASE_URL,
    logger,
    services: [ArtifactService],
    telemetry,
    metricsListen,
    routes: (router, database) => {
      store = createArtifactStore(database.orm);
      router.service(
        ArtifactService,
        createArtifactService({
          store,
          blobs,
          writers,
          watch,
          logger,
          auth: createAuthenticator({
            sql: createSql(database.orm),
            serviceToken: config.CORRAL_ARTIFACT_SERVICE_TOKEN,
            callsPerMinute: config.CORRAL_ARTIFACT_CALLS_PER_MINUTE,
          }),
          limits: {
            maxArtifactBytes: config.CORRAL_ARTIFACT_MAX_BYTES,
            runQuotaBytes: config.CORRAL_RUN_QUOTA_BYTES,
            runQuotaCount: config.CORRAL_RUN_QUOTA_COUNT,
          },
          followPollMs: config.CORRAL_ARTIFACT_FOLLOW_POLL,
          metrics,
        }),
        // Never compress responses: downloads stream stored bytes, often compressed already
        // (archives, images), and gzip on the way out cost eight times the rest of a download
        // (100 MiB: 3.3 s with, 0.4 s without). Compressed uploads are still accepted.
        { compressMinBytes: Number.POSITIVE_INFINITY },
      );
    },
  });

  // Uploads held by other replicas wake this one's followers through PostgreSQL. After a
  // reconnect, notifications may have been missed: wake every follower to look again.
  const listener = createPgListener({ url: config.DATABASE_URL, logger, onReconnect: () => watch.notifyAll() });
  try {
    await listener.on(UPLOAD_CHANNEL, (uploadId) => watch.notify(uploadId));
  } catch (error) {
    await listener.close();
    await service.close();
    throw error;
  }
  // Its first pass, right away, also removes partial data left by a crash.
  const sweeper = createRetentionSweeper({
    store: store!,
    retention: createRetentionStore(service.database.orm),
    blobs,
    logger,
    retentionMs: config.CORRAL_ARTIFACT_RETENTION,
    intervalMs: config.CORRAL_ARTIFACT_SWEEP_INTERVAL,
  });

  return {
    ...service,
    blobs,
    watch,
    writers,
    sweeper,
    async close(graceMs) {
      await sweeper.stop();
      await listener.close();
      await service.close(graceMs);
    },
  };
}
