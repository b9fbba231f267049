import { defineEntity, p } from "@mikro-orm/core";
import { Blob } from "./blob.ts";
import { createdAt, uint64, uuidPrimaryKey } from "./columns.ts";
import { Run } from "./run.ts";

export const Artifact = defineEntity({
  name: "Artifact",
  tableName: "artifacts",
  properties: {
    id: uuidPrimaryKey(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade"),
    name: p.text(),
    // A blob stays while an artifact points at it; the index serves the sweeper's search for unreferenced blobs.
    blob: () => p.manyToOne(Blob).ref().index(),
    size: uint64(),
    contentType: p.text(),
    attempt: p.integer(),
    createdAt: createdAt(),
  },
  uniques: [{ properties: ["run", "name"] }],
});
