import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MissingBytesError, type BlobStore } from "@corral/artifact/storage/blob-store.ts";
import { createFilesystemBlobStore, READ_CHUNK_BYTES } from "@corral/artifact/storage/filesystem-blob-store.ts";
import { bytes, filesUnder } from "./support.ts";

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

async function collect(pieces: AsyncIterable<Uint8Array>): Promise<{ data: Buffer; sizes: number[] }> {
  const parts: Buffer[] = [];
  for await (const piece of pieces) parts.push(Buffer.from(piece));
  return { data: Buffer.concat(parts), sizes: parts.map((p) => p.length) };
}

describe("filesystem blob store", () => {
  let root: string;
  let store: BlobStore;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-blob-store-"));
    store = await createFilesystemBlobStore({ root });
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** Writes `data` as an upload's partial data in two writes, synced. */
  async function partial(uploadId: string, data: Buffer) {
    const writer = await store.openPartial(uploadId, 0);
    const half = Math.floor(data.length / 2);
    await writer.write(0, data.subarray(0, half));
    await writer.write(half, data.subarray(half));
    await writer.sync();
    await writer.close();
  }

  it("writes partial data at offsets and reads back committed ranges", async () => {
    const id = randomUUID();
    const data = bytes(3 * READ_CHUNK_BYTES + 17, 1);
    await partial(id, data);
    const whole = await collect(store.readPartial(id, 0, data.length));
    assert.ok(whole.data.equals(data));
    assert.deepEqual(whole.sizes, [READ_CHUNK_BYTES, READ_CHUNK_BYTES, READ_CHUNK_BYTES, 17], "read in bounded pieces");
    assert.ok((await collect(store.readPartial(id, 5, 12))).data.equals(data.subarray(5, 12)));
    assert.equal((await collect(store.readPartial(id, 9, 9))).data.length, 0);
    await assert.rejects(collect(store.readPartial(id, 0, data.length + 1)), MissingBytesError);
  });

  it("cuts off uncommitted bytes on reopening, and refuses when committed bytes are missing", async () => {
    const id = randomUUID();
    await partial(id, bytes(1000, 2));
    const writer = await store.openPartial(id, 600);
    await writer.close();
    assert.equal((await stat(join(root, "uploads", id))).size, 600);
    await assert.rejects(store.openPartial(id, 601), MissingBytesError);
  });

  it("moves a verified partial under its digest, once per content", async () => {
    const data = bytes(5000, 3);
    const digest = sha256(data);
    const [a, b] = [randomUUID(), randomUUID()];
    await partial(a, data);
    await partial(b, data);
    await store.commitPartial(a, digest);
    await store.commitPartial(b, digest);
    assert.deepEqual(await filesUnder(root), [`blobs/sha256/${digest.slice(0, 2)}/${digest}`], "one file, no partial data left");
    assert.ok((await readFile(join(root, "blobs", "sha256", digest.slice(0, 2), digest))).equals(data));
    assert.equal(await store.hasBlob(digest), true);
    assert.ok((await collect(store.readBlob(digest, 100, 200))).data.equals(data.subarray(100, 200)));
    // A retry after a crash between the move and the database: the partial is gone, the blob is there.
    await store.commitPartial(a, digest);
    // Both gone: the bytes are lost.
    await assert.rejects(store.commitPartial(randomUUID(), sha256(Buffer.from("never stored"))), MissingBytesError);
    await store.deleteBlob(digest);
    assert.equal(await store.hasBlob(digest), false);
    await assert.rejects(collect(store.readBlob(digest, 0, 1)), MissingBytesError);
  });

  it("lists and discards partial data", async () => {
    const ids = [randomUUID(), randomUUID()].sort();
    for (const id of ids) await partial(id, bytes(10, 4));
    await writeFile(join(root, "uploads", "not-an-upload"), "x");
    const listed: string[] = [];
    for await (const id of store.listPartials()) listed.push(id);
    assert.deepEqual(listed.sort(), ids);
    await store.discardPartial(ids[0]!);
    await store.discardPartial(ids[0]!); // nothing left: fine
    assert.ok(!(await filesUnder(join(root, "uploads"))).includes(ids[0]!));
  });

  it("lists blobs with their sizes, and nothing that is not a blob where it belongs", async () => {
    const stored = [bytes(10, 5), bytes(2000, 6), bytes(0, 7)];
    for (const data of stored) {
      const id = randomUUID();
      await partial(id, data);
      await store.commitPartial(id, sha256(data));
    }
    const misplaced = sha256(Buffer.from("misplaced"));
    const wrongDir = misplaced.startsWith("00") ? "01" : "00";
    await mkdir(join(root, "blobs", "sha256", wrongDir), { recursive: true });
    await writeFile(join(root, "blobs", "sha256", wrongDir, misplaced), "misplaced");
    await writeFile(join(root, "blobs", "sha256", wrongDir, "notes.txt"), "x");
    await mkdir(join(root, "blobs", "sha256", "zz"), { recursive: true });
    const listed: { sha256: string; size: number }[] = [];
    for await (const blob of store.listBlobs()) listed.push(blob);
    const byDigest = (a: { sha256: string }, b: { sha256: string }) => a.sha256.localeCompare(b.sha256);
    assert.deepEqual(listed.sort(byDigest), stored.map((data) => ({ sha256: sha256(data), size: data.length })).sort(byDigest));
  });

  it("builds paths only from uuids and hex digests", async () => {
    for (const id of ["../x", "a/b", "", "UPPER-0000-0000-0000-000000000000", `${randomUUID()}/..`]) {
      await assert.rejects(store.openPartial(id, 0), /uuid/, id);
      await assert.rejects(collect(store.readPartial(id, 0, 1)), /uuid/, id);
      await assert.rejects(store.discardPartial(id), /uuid/, id);
    }
    for (const digest of ["../../etc/passwd", "ab", "G".repeat(64), "A".repeat(64)]) {
      await assert.rejects(store.hasBlob(digest), /sha256/, digest);
      await assert.rejects(store.commitPartial(randomUUID(), digest), /sha256/, digest);
      await assert.rejects(collect(store.readBlob(digest, 0, 1)), /sha256/, digest);
      await assert.rejects(store.deleteBlob(digest), /sha256/, digest);
    }
  });
});
