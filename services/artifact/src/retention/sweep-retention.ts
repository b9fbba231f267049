import type { Logger } from "@corral/plumbing/logger.ts";
import type { ArtifactStore } from "../artifacts/artifact-store.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import { sweepPartials } from "../uploads/sweep-partials.ts";
import type { ExpiredRun, RetentionStore } from "./retention-store.ts";

export interface RetentionDeps {
  store: ArtifactStore;
  retention: RetentionStore;
  blobs: BlobStore;
  logger: Logger;
  /** A run's artifacts are deleted this long after it finished; 0 keeps them forever. */
  retentionMs: number;
  /** Runs, and blobs, handled per transaction. */
  batchSize?: number;
  /** Ends the pass early (the service is stopping); what was done stays done. */
  signal?: AbortSignal;
}

export interface SweepReport {
  /** Runs whose artifacts were deleted. */
  runs: number;
  artifacts: number;
  uploads: number;
  /** Runs left for the next pass because their lock was taken. */
  busyRuns: number;
  /** Partial data of settled or deleted uploads removed. */
  partials: number;
  /** Blob files that had no row and were given one (then collected like any other). */
  adopted: number;
  /** Blobs deleted, row and bytes. */
  blobs: number;
}

/**
 * One retention pass, in an order where each step feeds the next:
 *
 * 1. Runs that finished more than the retention age ago lose their artifacts and uploads. Age
 *    counts from runs.finished_at, not created_at: a run that is still going is never swept
 *    (however long it was queued or has run, its live log stays readable), and every run keeps
 *    its artifacts for the whole retention age after its end.
 * 2. Partial data of uploads that are settled or deleted goes (what step 1 left on disk).
 * 3. Blob files with no row get one (a finish cut short after the move, never retried).
 * 4. Blobs that no artifact and no verified upload refers to go, row and bytes, under the row
 *    locks that keep a concurrent finish from deduplicating against a blob being deleted.
 *
 * Every step is its own short transaction(s) and idempotent, so passes of several replicas may
 * overlap (they skip what the other holds), and a pass cut short is finished by the next one.
 */
export async function sweepRetention(deps: RetentionDeps): Promise<SweepReport> {
  const { retention, blobs, logger } = deps;
  const batch = deps.batchSize ?? 500;
  const report: SweepReport = { runs: 0, artifacts: 0, uploads: 0, busyRuns: 0, partials: 0, adopted: 0, blobs: 0 };
  const stopped = () => deps.signal?.aborted === true;

  if (deps.retentionMs > 0) {
    // Paged by (finished_at, id), so a run left alone (busy) is not met again in this pass.
    let after: ExpiredRun | undefined;
    while (!stopped()) {
      const runs = await retention.expiredRuns(deps.retentionMs, after, batch);
      for (const run of runs) {
        if (stopped()) break;
        after = run;
        const deleted = await retention.deleteRunArtifacts(run.id, deps.retentionMs);
        if (!deleted) {
          report.busyRuns += 1;
          continue;
        }
        // Nothing deleted: another replica's sweeper got there first.
        if (deleted.artifacts + deleted.uploadIds.length > 0) report.runs += 1;
        report.artifacts += deleted.artifacts;
        report.uploads += deleted.uploadIds.length;
        // Their partial data goes now (step 2 would find it too): it holds nobody else's bytes.
        for (const uploadId of deleted.uploadIds) await blobs.discardPartial(uploadId);
      }
      if (runs.length < batch) break;
    }
  }

  if (!stopped()) report.partials = await sweepPartials(deps.store, blobs, logger);

  let listed: { sha256: string; size: number }[] = [];
  for await (const blob of blobs.listBlobs()) {
    if (stopped()) break;
    listed.push(blob);
    if (listed.length >= batch) {
      report.adopted += await retention.adoptBlobs(listed);
      listed = [];
    }
  }
  if (!stopped()) report.adopted += await retention.adoptBlobs(listed);

  while (!stopped()) {
    const { examined, deleted } = await retention.collectBlobs(batch, (sha256) => blobs.deleteBlob(sha256));
    report.blobs += deleted.length;
    if (examined < batch) break;
  }

  if (report.runs + report.partials + report.adopted + report.blobs > 0 || report.busyRuns > 0) logger.info(report, "retention sweep");
  return report;
}
