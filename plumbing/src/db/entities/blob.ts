import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, uint64, uuidPrimaryKey } from "./columns.ts";

/** Content-addressed storage: one row per distinct content, shared by artifacts. */
export const Blob = defineEntity({
  name: "Blob",
  tableName: "blobs",
  properties: {
    id: uuidPrimaryKey(),
    sha256: p.text().unique(),
    size: uint64(),
    createdAt: createdAt(),
  },
});
