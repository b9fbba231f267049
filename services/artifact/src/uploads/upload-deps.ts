import type { Logger } from "@corral/plumbing/logger.ts";
import type { ArtifactStore } from "../artifacts/artifact-store.ts";
import type { UploadWatch } from "../downloads/upload-watch.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import type { ArtifactMetrics } from "../telemetry/artifact-metrics.ts";
import type { WriterRegistry } from "./writer-registry.ts";

export interface ArtifactLimits {
  /** Largest artifact, in bytes. */
  maxArtifactBytes: number;
  /** Bytes of one run's artifacts together. */
  runQuotaBytes: number;
  /** Artifacts of one run. */
  runQuotaCount: number;
}

/** What the upload and download logic needs; built once by start-artifact, or by a test. */
export interface ArtifactDeps {
  store: ArtifactStore;
  blobs: BlobStore;
  writers: WriterRegistry;
  watch: UploadWatch;
  limits: ArtifactLimits;
  logger: Logger;
  /** How often a following download looks again when no notification came. */
  followPollMs: number;
  /** Least time between two offset commits of one upload; COMMIT_INTERVAL_MS by default. */
  commitIntervalMs?: number;
  /** Upload bytes and stored artifacts; uncounted without it. */
  metrics?: ArtifactMetrics;
}
