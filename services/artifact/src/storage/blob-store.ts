/**
 * Where artifact bytes live. Two kinds of objects: partial uploads, addressed by upload id and
 * written in offset order, and blobs, addressed by their sha256 and immutable. Callers never pass
 * a name or a path, only a uuid or a digest, so no artifact name can reach the storage layout.
 *
 * Offsets and sizes are numbers: artifacts are bounded far below 2^53 bytes by configuration.
 */
export interface BlobStore {
  /**
   * Opens an upload's partial data for writing, created empty when new. Bytes past `committed`
   * (written but never committed before a crash or a dropped stream) are cut off, so the data is
   * exactly what the committed offset says. MissingBytesError when fewer than `committed` bytes are there.
   */
  openPartial(uploadId: string, committed: number): Promise<PartialWriter>;
  /** Bytes [start, end) of a partial upload; they must be committed (synced). */
  readPartial(uploadId: string, start: number, end: number): AsyncIterable<Uint8Array>;
  /**
   * Moves a verified partial upload into content-addressed storage under its digest. When the blob
   * is already there (same content uploaded before), the partial is dropped instead: one copy per
   * content. Idempotent: when the partial is gone but the blob is there, a retry after a crash
   * succeeds; when both are gone, MissingBytesError.
   */
  commitPartial(uploadId: string, sha256: string): Promise<void>;
  /** Deletes an upload's partial data; nothing when there is none. */
  discardPartial(uploadId: string): Promise<void>;
  /** Upload ids that have partial data, for sweeping leftovers. */
  listPartials(): AsyncIterable<string>;
  /** Bytes [start, end) of a blob. */
  readBlob(sha256: string, start: number, end: number): AsyncIterable<Uint8Array>;
  hasBlob(sha256: string): Promise<boolean>;
  /**
   * Every stored blob, for the retention sweeper's search for blobs that have no row (a finish
   * cut short after its bytes moved in). Lazy: a store of any size is listed in bounded memory.
   */
  listBlobs(): AsyncIterable<{ sha256: string; size: number }>;
  /** Deletes a blob; nothing when there is none. Callers make sure no artifact points at it. */
  deleteBlob(sha256: string): Promise<void>;
}

/** Appends to one upload's partial data; one writer per upload at a time. */
export interface PartialWriter {
  /** Writes at `offset`, which is where the previous write ended. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every byte written before the call durable; only then may its offset be committed. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The bytes a caller was promised are not in the store: lost, or moved by a concurrent finish. */
export class MissingBytesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MissingBytesError";
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Stores build keys only from values that pass these, a second line behind request validation. */
export function assertUploadId(uploadId: string): void {
  if (!UUID.test(uploadId)) throw new Error("upload id must be a lowercase uuid");
}

export function assertSha256(sha256: string): void {
  if (!SHA256.test(sha256)) throw new Error("sha256 must be 64 lowercase hex digits");
}
