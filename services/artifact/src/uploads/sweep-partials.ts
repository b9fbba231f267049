import type { Logger } from "@corral/plumbing/logger.ts";
import type { ArtifactStore } from "../artifacts/artifact-store.ts";
import type { BlobStore } from "../storage/blob-store.ts";

/**
 * Deletes partial data nobody will read again: of uploads that finished or failed (a crash
 * between the row's update and the file's removal) or whose row is gone (the run was deleted).
 * Safe beside live uploads: a partial file is only created after its upload's row is committed.
 */
export async function sweepPartials(store: ArtifactStore, blobs: BlobStore, logger: Logger): Promise<number> {
  const ids: string[] = [];
  for await (const id of blobs.listPartials()) ids.push(id);
  const settled = await store.settledUploads(ids);
  for (const id of settled) await blobs.discardPartial(id);
  if (settled.length > 0) logger.info({ count: settled.length }, "removed partial data of settled uploads");
  return settled.length;
}
