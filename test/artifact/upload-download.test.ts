import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { appendFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, type ConnectError } from "@connectrpc/connect";
import { DigestMismatchSchema, FieldViolationsSchema, UploadOffsetMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import {
  auth,
  blobFiles,
  bytes,
  chunk,
  download,
  eventually,
  expectCode,
  finish,
  header,
  MiB,
  partialFiles,
  sha256,
  startArtifactFixture,
  upload,
  wholeUpload,
  type ArtifactFixture,
} from "./support.ts";

const blobPath = (digest: string) => `sha256/${digest.slice(0, 2)}/${digest}`;
const fieldsOf = (error: ConnectError) =>
  error.findDetails(FieldViolationsSchema).flatMap((d) => d.violations.map((v) => v.field));

describe("artifact service: upload and download", () => {
  let fx: ArtifactFixture;
  before(async () => {
    fx = await startArtifactFixture();
  });
  after(() => fx?.close());

  /** Starts an upload that sends `sent` bytes of `data` and then waits, until the returned abort. */
  async function interruptedUpload(run: SeededRun, name: string, data: Buffer, sent: number, uploadId = randomUUID()) {
    const controller = new AbortController();
    const hung = new Promise<void>((resolve) => controller.signal.addEventListener("abort", () => resolve()));
    const call = upload(
      fx.client,
      run.token,
      (async function* () {
        yield header({ uploadId, runId: run.runId, name });
        for (let offset = 0; offset < sent; offset += 128 * 1024) yield chunk(offset, data.subarray(offset, Math.min(sent, offset + 128 * 1024)));
        await hung;
      })(),
      controller.signal,
    );
    call.catch(() => {}); // awaited by the test when it expects the stream's end
    // The stream stays open; the group commit catches up with what was written.
    await eventually(async () => {
      const query = await fx.client.queryUpload({ uploadId }, auth(run.token)).catch(() => undefined); // NOT_FOUND until the header is in
      return query?.committedOffset === BigInt(sent) ? true : undefined;
    }, `committed offset ${sent}`);
    return {
      uploadId,
      async abort() {
        controller.abort();
        await expectCode(call, Code.Canceled);
      },
      call,
    };
  }

  it("stores a multi-MiB artifact sent in many chunks and gives it back whole", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(5 * MiB + 12345, 7);
    const response = await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "out/big.bin", contentType: "application/x-test" }, data, { chunkSize: 64 * 1024 }));
    assert.equal(response.committedOffset, BigInt(data.length));
    assert.equal(response.artifact?.complete, true);
    assert.equal(response.artifact?.sha256, sha256(data));
    assert.equal(response.artifact?.size, BigInt(data.length));
    assert.equal(response.artifact?.contentType, "application/x-test");
    assert.equal(response.artifact?.attempt, 1);
    assert.ok(response.artifact?.completedAt, "completed_at is set");
    const got = await download(fx.client, run.token, { runId: run.runId, name: "out/big.bin" });
    assert.ok(got.data.equals(data), "downloaded bytes differ");
    assert.equal(got.artifact?.sha256, sha256(data));
    let expected = 0n;
    for (const message of got.messages) {
      assert.equal(message.offset, expected, "messages are in order and contiguous");
      assert.ok(message.data.byteLength <= MiB);
      expected += BigInt(message.data.byteLength);
    }
    assert.ok(got.messages.length > 1, "a large artifact arrives in several messages");
    assert.equal(got.messages.slice(1).filter((m) => m.artifact).length, 0, "only the first message carries the artifact");
    assert.ok(!(await partialFiles(fx)).includes(response.uploadId), "no partial data is left behind");
    assert.ok((await blobFiles(fx)).includes(blobPath(sha256(data))), "stored under its digest");
  });

  it("serves byte ranges: offset and limit, clipped at the end, OUT_OF_RANGE past it", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(3 * MiB + 101, 8);
    await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "ranged.bin" }, data));
    const range = async (offset: number, limit: number) =>
      (await download(fx.client, run.token, { runId: run.runId, name: "ranged.bin", offset: BigInt(offset), limit: BigInt(limit) })).data;
    assert.ok((await range(0, 10)).equals(data.subarray(0, 10)));
    assert.ok((await range(MiB - 3, 2 * MiB)).equals(data.subarray(MiB - 3, 3 * MiB - 3)), "a range across message boundaries");
    assert.ok((await range(data.length - 5, 0)).equals(data.subarray(data.length - 5)), "limit 0 reads to the end");
    assert.ok((await range(data.length - 5, 1000)).equals(data.subarray(data.length - 5)), "a limit past the end is clipped");
    const atEnd = await download(fx.client, run.token, { runId: run.runId, name: "ranged.bin", offset: BigInt(data.length) });
    assert.equal(atEnd.data.length, 0);
    assert.equal(atEnd.messages.length, 1, "one message with the artifact and no bytes");
    assert.equal(atEnd.artifact?.size, BigInt(data.length));
    await expectCode(download(fx.client, run.token, { runId: run.runId, name: "ranged.bin", offset: BigInt(data.length + 1) }), Code.OutOfRange);
    await expectCode(download(fx.client, run.token, { runId: run.runId, name: "missing.bin" }), Code.NotFound);
  });

  it("answers DATA_LOSS, not INTERNAL, when a stored blob has gone from the disk", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(1000, 19);
    await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "vanished.bin" }, data));
    await rm(join(fx.storeDir, "blobs", blobPath(sha256(data))));
    await expectCode(download(fx.client, run.token, { runId: run.runId, name: "vanished.bin" }), Code.DataLoss);
  });

  it("stores an empty artifact", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const response = await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "empty" }, Buffer.alloc(0)));
    assert.equal(response.artifact?.size, 0n);
    assert.equal(response.artifact?.sha256, sha256(Buffer.alloc(0)));
    const got = await download(fx.client, run.token, { runId: run.runId, name: "empty" });
    assert.equal(got.data.length, 0);
    assert.equal(got.artifact?.complete, true);
  });

  it("resumes an interrupted upload from the committed offset, sending only the rest", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(3 * MiB + 777, 9);
    const sent = 2 * MiB + 5;
    const first = await interruptedUpload(run, "resumed.bin", data, sent);
    await first.abort();
    const query = await fx.client.queryUpload({ uploadId: first.uploadId }, auth(run.token));
    assert.equal(query.committedOffset, BigInt(sent), "everything written before the cancel is committed");
    assert.equal(query.finished, false);
    const stat = await fx.client.stat({ runId: run.runId, name: "resumed.bin" }, auth(run.token));
    assert.equal(stat.artifact?.complete, false);
    assert.equal(stat.artifact?.size, BigInt(sent), "an unfinished artifact's size is what is committed");

    const response = await upload(fx.client, run.token, wholeUpload({ uploadId: first.uploadId, runId: run.runId, name: "resumed.bin" }, data, { from: sent }));
    assert.equal(response.artifact?.sha256, sha256(data), "the digest covers the bytes of both streams");
    assert.ok((await download(fx.client, run.token, { runId: run.runId, name: "resumed.bin" })).data.equals(data));
    const after = await fx.client.queryUpload({ uploadId: first.uploadId }, auth(run.token));
    assert.equal(after.finished, true);
    assert.equal(after.artifact?.sha256, sha256(data));
  });

  it("cuts off bytes written but never committed (a crash) when the upload resumes", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(MiB, 10);
    const first = await interruptedUpload(run, "crashed.bin", data, 300_000);
    await first.abort();
    // What a crash between write and commit leaves: more bytes on disk than the committed offset.
    await appendFile(join(fx.storeDir, "uploads", first.uploadId), Buffer.from("garbage that was never committed"));
    const response = await upload(fx.client, run.token, wholeUpload({ uploadId: first.uploadId, runId: run.runId, name: "crashed.bin" }, data, { from: 300_000 }));
    assert.equal(response.artifact?.sha256, sha256(data));
    assert.ok((await download(fx.client, run.token, { runId: run.runId, name: "crashed.bin" })).data.equals(data));
  });

  it("leaves a cancelled upload's partial data at its committed size, not growing", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const first = await interruptedUpload(run, "cancelled.bin", bytes(MiB, 11), 512 * 1024);
    await first.abort();
    const path = join(fx.storeDir, "uploads", first.uploadId);
    await eventually(async () => (fx.server.writers.active === 0 ? true : undefined), "the stream to let go of the upload");
    const size = (await stat(path)).size;
    assert.equal(size, 512 * 1024);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await stat(path)).size, size);
  });

  it("answers a chunk not at the committed offset with FAILED_PRECONDITION and the offset to resume from", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const uploadId = randomUUID();
    const data = bytes(4000, 12);
    const gap = await expectCode(
      upload(fx.client, run.token, [header({ uploadId, runId: run.runId, name: "gap.bin" }), chunk(0, data.subarray(0, 1000)), chunk(2000, data.subarray(2000, 3000))]),
      Code.FailedPrecondition,
    );
    const mismatch = gap.findDetails(UploadOffsetMismatchSchema)[0];
    assert.equal(mismatch?.committedOffset, 1000n);
    assert.equal(mismatch?.offset, 2000n);
    // A new stream that starts over from 0 instead of resuming.
    const restart = await expectCode(upload(fx.client, run.token, [header({ uploadId, runId: run.runId, name: "gap.bin" }), chunk(0, data)]), Code.FailedPrecondition);
    assert.equal(restart.findDetails(UploadOffsetMismatchSchema)[0]?.committedOffset, 1000n);
    const done = await upload(fx.client, run.token, [header({ uploadId, runId: run.runId, name: "gap.bin" }), chunk(1000, data.subarray(1000)), finish(sha256(data), data.length)]);
    assert.equal(done.artifact?.sha256, sha256(data));
  });

  it("answers a digest mismatch with DATA_LOSS and stores nothing", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(700_000, 13);
    const uploadId = randomUUID();
    const wrong = sha256(Buffer.from("something else"));
    const error = await expectCode(upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "bad.bin" }, data, { sha256: wrong })), Code.DataLoss);
    const mismatch = error.findDetails(DigestMismatchSchema)[0];
    assert.equal(mismatch?.declaredSha256, wrong);
    assert.equal(mismatch?.actualSha256, sha256(data));
    assert.ok(!(await blobFiles(fx)).includes(blobPath(sha256(data))), "no blob file");
    assert.equal(await fx.sql.one("select 1 from blobs where sha256 = ?", [sha256(data)]), undefined, "no blob row");
    assert.ok(!(await partialFiles(fx)).includes(uploadId), "the partial data is discarded");
    await expectCode(fx.client.stat({ runId: run.runId, name: "bad.bin" }, auth(run.token)), Code.NotFound);
    await expectCode(fx.client.queryUpload({ uploadId }, auth(run.token)), Code.FailedPrecondition);
    await expectCode(upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "bad.bin" }, data)), Code.FailedPrecondition);
    // The name is free again for a new upload.
    const retry = await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "bad.bin" }, data));
    assert.equal(retry.artifact?.sha256, sha256(data));
  });

  it("refuses a finish whose size is not what was committed, keeping the bytes for a retry", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(100_000, 14);
    const uploadId = randomUUID();
    const target = { uploadId, runId: run.runId, name: "sized.bin" };
    const error = await expectCode(upload(fx.client, run.token, wholeUpload(target, data, { size: data.length + 1 })), Code.InvalidArgument);
    assert.deepEqual(fieldsOf(error), ["finish.size"]);
    const done = await upload(fx.client, run.token, [header(target), finish(sha256(data), data.length)]);
    assert.equal(done.artifact?.sha256, sha256(data));
  });

  it("deduplicates: the same content in two artifacts is one blob", async () => {
    const [a, b] = [await seedLaunchedRun(fx.sql), await seedLaunchedRun(fx.sql)];
    const data = bytes(2 * MiB + 3, 15);
    const digest = sha256(data);
    const ids: string[] = [randomUUID(), randomUUID(), randomUUID()];
    await upload(fx.client, a.token, wholeUpload({ uploadId: ids[0], runId: a.runId, name: "one.bin" }, data));
    await upload(fx.client, b.token, wholeUpload({ uploadId: ids[1], runId: b.runId, name: "two.bin" }, data));
    await upload(fx.client, a.token, wholeUpload({ uploadId: ids[2], runId: a.runId, name: "three.bin" }, data, { chunkSize: MiB }));
    assert.equal((await blobFiles(fx)).filter((file) => file.endsWith(digest)).length, 1, "one file on disk");
    const rows = await fx.sql.all<{ n: string }>("select count(*) as n from blobs where sha256 = ?", [digest]);
    assert.equal(Number(rows[0]!.n), 1, "one blob row");
    const refs = await fx.sql.all<{ n: string }>("select count(*) as n from artifacts a join blobs b on b.id = a.blob_id where b.sha256 = ?", [digest]);
    assert.equal(Number(refs[0]!.n), 3);
    assert.deepEqual((await partialFiles(fx)).filter((file) => ids.includes(file)), [], "the duplicates' partial data is dropped");
    assert.ok((await download(fx.client, b.token, { runId: b.runId, name: "two.bin" })).data.equals(data));
    assert.ok((await download(fx.client, a.token, { runId: a.runId, name: "three.bin" })).data.equals(data));
  });

  it("answers a repeated upload of a finished upload id with its artifact, and keeps names immutable", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(10_000, 16);
    const uploadId = randomUUID();
    await upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "once.bin" }, data));
    const again = await upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "once.bin" }, data));
    assert.equal(again.artifact?.sha256, sha256(data), "a retried finish whose answer was lost gets the same answer");
    await expectCode(upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "once.bin" }, bytes(10, 1))), Code.AlreadyExists);
    await expectCode(upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "other.bin" }, data)), Code.AlreadyExists);
  });

  it("hands an upload to a newer stream: the older one ends ABORTED after committing what it wrote", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(MiB, 17);
    const first = await interruptedUpload(run, "taken-over.bin", data, 400_000);
    const second = await upload(fx.client, run.token, wholeUpload({ uploadId: first.uploadId, runId: run.runId, name: "taken-over.bin" }, data, { from: 400_000 }));
    assert.equal(second.artifact?.sha256, sha256(data));
    await expectCode(first.call, Code.Aborted);
  });

  it("sweeps, at start-up, partial data of uploads that are settled or gone, keeping open ones", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const open = await interruptedUpload(run, "still-open.bin", bytes(1000, 18), 1000);
    await open.abort();
    const orphan = randomUUID(); // a row deleted with its run, or a crash after "failed"
    await writeFile(join(fx.storeDir, "uploads", orphan), "leftover");
    const restarted = await startArtifactFixture({}, { database: fx.database, sandbox: fx.sandbox });
    try {
      await eventually(async () => (!(await partialFiles(fx)).includes(orphan) ? true : undefined), "the orphan to be swept");
      assert.ok((await partialFiles(fx)).includes(open.uploadId), "an open upload keeps its data");
    } finally {
      await restarted.close();
    }
  });

  it("validates the stream: header first and once, every bad header field named", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const noHeader = await expectCode(upload(fx.client, run.token, [chunk(0, Buffer.from("x"))]), Code.InvalidArgument);
    assert.deepEqual(fieldsOf(noHeader), ["header"]);
    const twice = await expectCode(upload(fx.client, run.token, [header({ runId: run.runId, name: "h" }), header({ runId: run.runId, name: "h" })]), Code.InvalidArgument);
    assert.deepEqual(fieldsOf(twice), ["header"]);
    const bad = await expectCode(
      upload(fx.client, run.token, [{ case: "header", value: { uploadId: "nope", runId: "", name: "../x", contentType: "not a type" } as never }]),
      Code.InvalidArgument,
    );
    assert.deepEqual(fieldsOf(bad).sort(), ["header.content_type", "header.name", "header.run_id", "header.upload_id"]);
    const big = await expectCode(upload(fx.client, run.token, [header({ runId: run.runId, name: "big-chunk" }), chunk(0, Buffer.alloc(MiB + 1))]), Code.InvalidArgument);
    assert.deepEqual(fieldsOf(big), ["chunk.data"]);
    const digest = await expectCode(upload(fx.client, run.token, [header({ runId: run.runId, name: "bad-digest" }), finish("abc", 0)]), Code.InvalidArgument);
    assert.deepEqual(fieldsOf(digest), ["finish.sha256"]);
  });
});
