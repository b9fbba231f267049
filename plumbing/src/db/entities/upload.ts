import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, uint64, updatedAt } from "./columns.ts";
import { Run } from "./run.ts";

export const uploadStates = ["open", "finished", "failed"] as const;
export type UploadState = (typeof uploadStates)[number];

/** A resumable upload. Not unique per (run, name): a name may be uploaded again after a failure. */
export const Upload = defineEntity({
  name: "Upload",
  tableName: "uploads",
  properties: {
    /** Chosen by the client, so it can resume after a reconnect. */
    id: p.uuid().primary(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade").index(),
    name: p.text(),
    committedOffset: uint64().default(0),
    declaredSha256: p.text().nullable(),
    state: p.enum(uploadStates),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
});
