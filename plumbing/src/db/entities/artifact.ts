import { defineEntity, p } from "@mikro-orm/core";
import { Blob } from "./blob.ts";
import { createdAt, timestamp, uint64, uuidPrimaryKey } from "./columns.ts";
import { Run } from "./run.ts";
import { Upload } from "./upload.ts";

/**
 * A named file of a run. The row exists from the upload's header on, so a growing upload (a live
 * run log) can be listed and followed; blob, size and completedAt are set when it is finished.
 */
export const Artifact = defineEntity({
  name: "Artifact",
  tableName: "artifacts",
  properties: {
    id: uuidPrimaryKey(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade"),
    name: p.text(),
    /** The upload writing it; kept when the upload row is swept after the artifact is finished. */
    upload: () => p.manyToOne(Upload).ref().nullable().unique().deleteRule("set null"),
    // A blob cannot be deleted while an artifact points at it (no action, not set null); the index serves the sweeper's search for unreferenced blobs.
    blob: () => p.manyToOne(Blob).ref().nullable().index().deleteRule("no action"),
    /** Final size; while unfinished, the upload's committed offset is the size. */
    size: uint64().default(0),
    contentType: p.text(),
    attempt: p.integer(),
    createdAt: createdAt(),
    completedAt: timestamp(),
  },
  uniques: [{ properties: ["run", "name"] }],
});
