import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, uint64, updatedAt } from "./columns.ts";
import { Run } from "./run.ts";

/**
 * open: bytes arrive; verified: every byte is in and matched the digest, the bytes are moving into
 * the blob store (only finish is accepted, so a crash in between can be completed by a retry);
 * finished: the artifact is stored; failed: the digest did not match and nothing was stored.
 */
export const uploadStates = ["open", "verified", "finished", "failed"] as const;
export type UploadState = (typeof uploadStates)[number];

/** A resumable upload; its artifact row (artifacts.upload_id) names it in the run. */
export const Upload = defineEntity({
  name: "Upload",
  tableName: "uploads",
  properties: {
    /** Chosen by the client, so it can resume after a reconnect. */
    id: p.uuid().primary(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade").index(),
    name: p.text(),
    /** Bytes durable on disk and acknowledged; never more than the blob store has fsynced. */
    committedOffset: uint64().default(0),
    /** The digest, once the bytes checked out against it. */
    sha256: p.text().nullable(),
    /** Raised by every stream that takes the upload over; a write of an older stream is fenced off. */
    writerEpoch: uint64().default(0),
    state: p.enum(uploadStates),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
});
