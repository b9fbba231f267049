import { constants } from "node:fs";
import { mkdir, open, opendir, readdir, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { assertSha256, assertUploadId, MissingBytesError, type BlobStore, type PartialWriter } from "./blob-store.ts";

/** Bytes per read when streaming a range; also the size of the download messages. */
export const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * The default BlobStore: files under one directory.
 *
 *   <root>/blobs/sha256/<first two hex digits>/<digest>   immutable, one per content
 *   <root>/uploads/<upload id>                            partial uploads
 *
 * Partial uploads live on the same filesystem as blobs, so finishing one is a rename: atomic, and
 * no copy. Durability: data is fsynced before its offset is committed (PartialWriter.sync), and the
 * directory is fsynced after a file appears in it, so a crash loses no committed byte and never
 * leaves a half-written blob under a digest.
 */
export async function createFilesystemBlobStore(options: { root: string }): Promise<BlobStore> {
  const root = resolve(options.root);
  const blobsDir = join(root, "blobs", "sha256");
  const uploadsDir = join(root, "uploads");
  await mkdir(blobsDir, { recursive: true });
  await mkdir(uploadsDir, { recursive: true });

  const partialPath = (uploadId: string) => {
    assertUploadId(uploadId);
    return join(uploadsDir, uploadId);
  };
  const blobDir = (sha256: string) => {
    assertSha256(sha256);
    // Fan out, so no directory holds millions of entries.
    return join(blobsDir, sha256.slice(0, 2));
  };

  return {
    async openPartial(uploadId, committed) {
      const path = partialPath(uploadId);
      const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
      try {
        const { size } = await handle.stat();
        if (size < committed) throw new MissingBytesError(`partial upload has ${size} of ${committed} committed bytes`);
        if (size > committed) await handle.truncate(committed);
        // A new file's directory entry must survive a crash as much as the bytes synced into it.
        if (size === 0) await syncDirectory(uploadsDir);
      } catch (error) {
        await handle.close();
        throw error;
      }
      return createPartialWriter(handle);
    },

    async *readPartial(uploadId, start, end) {
      yield* readRange(partialPath(uploadId), start, end);
    },

    async commitPartial(uploadId, sha256) {
      const from = partialPath(uploadId);
      const dir = blobDir(sha256);
      const to = join(dir, sha256);
      if (await exists(to)) {
        // Deduplicated: the content is stored already; this copy is not needed.
        await unlinkIfPresent(from);
        return;
      }
      await mkdir(dir, { recursive: true });
      try {
        await rename(from, to);
      } catch (error) {
        if (isNotFound(error)) throw new MissingBytesError("partial upload is gone and its blob is not stored");
        throw error;
      }
      await syncDirectory(dir);
      await syncDirectory(uploadsDir);
    },

    discardPartial: async (uploadId) => unlinkIfPresent(partialPath(uploadId)),

    async *listPartials() {
      for (const entry of await readdir(uploadsDir)) {
        if (/^[0-9a-f-]{36}$/.test(entry)) yield entry;
      }
    },

    async *readBlob(sha256, start, end) {
      yield* readRange(join(blobDir(sha256), sha256), start, end);
    },

    hasBlob: async (sha256) => exists(join(blobDir(sha256), sha256)),

    async *listBlobs() {
      for (const prefix of (await readdir(blobsDir)).sort()) {
        if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
        // opendir reads the directory in batches, however many blobs it holds.
        for await (const { name: entry } of await opendir(join(blobsDir, prefix))) {
          // Only files named by a digest that belongs in this directory: anything else is not a blob.
          if (!/^[0-9a-f]{64}$/.test(entry) || !entry.startsWith(prefix)) continue;
          try {
            const info = await stat(join(blobsDir, prefix, entry));
            if (info.isFile()) yield { sha256: entry, size: info.size };
          } catch (error) {
            if (!isNotFound(error)) throw error; // deleted since the listing
          }
        }
      }
    },

    deleteBlob: async (sha256) => unlinkIfPresent(join(blobDir(sha256), sha256)),
  };
}

function createPartialWriter(handle: FileHandle): PartialWriter {
  let closed = false;
  return {
    async write(offset, data) {
      let written = 0;
      while (written < data.byteLength) {
        const result = await handle.write(data, written, data.byteLength - written, offset + written);
        written += result.bytesWritten;
      }
    },
    // fdatasync: the data and the file size, which is all a reader needs.
    sync: () => handle.datasync(),
    async close() {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}

/**
 * Streams [start, end) of a file in READ_CHUNK_BYTES pieces, reading the next piece only when the
 * consumer asks for it: memory stays flat whatever the size, and a slow reader slows the reads.
 * A fresh buffer per piece, because the consumer may still hold the previous one.
 */
async function* readRange(path: string, start: number, end: number): AsyncGenerator<Uint8Array> {
  if (end <= start) return;
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    if (isNotFound(error)) throw new MissingBytesError("stored bytes not found");
    throw error;
  }
  try {
    for (let position = start; position < end; ) {
      const length = Math.min(READ_CHUNK_BYTES, end - position);
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      if (bytesRead === 0) throw new MissingBytesError(`stored bytes end at ${position}, expected ${end}`);
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}

const isNotFound = (error: unknown) => (error as NodeJS.ErrnoException).code === "ENOENT";
