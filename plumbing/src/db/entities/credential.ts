import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, timestamp, uuidPrimaryKey } from "./columns.ts";
import { Run } from "./run.ts";

/** A per-attempt agent credential. Only its hash is stored, never the token. */
export const Credential = defineEntity({
  name: "Credential",
  tableName: "credentials",
  properties: {
    id: uuidPrimaryKey(),
    // Indexed so deleting a run does not scan every credential.
    run: () => p.manyToOne(Run).ref().deleteRule("cascade").index(),
    attempt: p.integer(),
    /** Hex sha256 of the token; the unique index serves the lookup on attach. */
    tokenHash: p.text().unique(),
    expiresAt: p.datetime(),
    revokedAt: timestamp(),
    createdAt: createdAt(),
  },
});
