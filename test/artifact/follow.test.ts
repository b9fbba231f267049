import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { UploadRequestSchema, type DownloadResponse, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createAsyncQueue } from "@corral/plumbing/async-queue.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { auth, bytes, chunk, download, eventually, failure, finish, header, sha256, startArtifactFixture, type ArtifactClient, type ArtifactFixture } from "./support.ts";

/** An upload stream the test feeds message by message. */
function openUpload(client: ArtifactClient, run: SeededRun, name: string) {
  const requests = createAsyncQueue<UploadRequest>();
  const uploadId = randomUUID();
  const call = client.upload(requests, auth(run.token));
  call.catch(() => {});
  const send = (message: UploadRequest["message"]) => requests.push(create(UploadRequestSchema, { message } as never));
  send(header({ uploadId, runId: run.runId, name }));
  return {
    uploadId,
    send,
    end: () => requests.close(),
    call,
    /** Waits until the server has committed `offset` bytes. */
    committed: (offset: number) =>
      eventually(async () => {
        const query = await client.queryUpload({ uploadId }, auth(run.token)).catch(() => undefined); // NOT_FOUND until the header is in
        return query?.committedOffset === BigInt(offset) ? true : undefined;
      }, `committed offset ${offset}`),
  };
}

/** A following download running in the background, collecting what arrives. */
function follow(client: ArtifactClient, run: SeededRun, request: { name: string; offset?: number; limit?: number }) {
  const controller = new AbortController();
  const messages: DownloadResponse[] = [];
  let ended: ConnectError | null | undefined;
  const done = (async () => {
    try {
      const stream = client.download(
        { runId: run.runId, name: request.name, follow: true, offset: BigInt(request.offset ?? 0), limit: BigInt(request.limit ?? 0) },
        { ...auth(run.token), signal: controller.signal },
      );
      for await (const message of stream) messages.push(message);
      ended = null;
    } catch (error) {
      ended = ConnectError.from(error);
    }
  })();
  const data = () => Buffer.concat(messages.map((m) => Buffer.from(m.data)));
  return {
    messages,
    data,
    get ended() {
      return ended;
    },
    /** Waits until `size` bytes have arrived, and no more than that. */
    async received(size: number, timeoutMs = 3000): Promise<void> {
      await eventually(async () => (data().length >= size || ended !== undefined ? true : undefined), `${size} bytes to arrive`, timeoutMs);
      assert.equal(data().length, size, `received ${data().length} bytes, expected ${size} (ended: ${ended?.message ?? ended})`);
    },
    async finished(timeoutMs = 3000): Promise<ConnectError | null> {
      await eventually(async () => (ended !== undefined ? true : undefined), "the download to end", timeoutMs);
      return ended!;
    },
    abort: () => controller.abort(),
    done,
  };
}

describe("artifact service: following a growing upload", () => {
  let fx: ArtifactFixture;
  let replica: ArtifactFixture;
  before(async () => {
    // A poll slower than any test: every wake-up seen here comes from a notification.
    fx = await startArtifactFixture({ CORRAL_ARTIFACT_FOLLOW_POLL: "60s" });
    replica = await startArtifactFixture({ CORRAL_ARTIFACT_FOLLOW_POLL: "60s" }, { database: fx.database, sandbox: fx.sandbox });
  });
  after(async () => {
    await replica?.close();
    await fx?.close();
  });

  for (const where of ["on the same server", "on another replica (PostgreSQL NOTIFY)"]) {
    it(`streams bytes as they are committed and ends at finish, ${where}`, async () => {
      const reader = where.startsWith("on the same") ? fx : replica;
      const run = await seedLaunchedRun(fx.sql);
      const data = bytes(6000, 31);
      const writer = openUpload(fx.client, run, "logs/run.log");
      writer.send(chunk(0, data.subarray(0, 1000)));
      await writer.committed(1000);
      const follower = follow(reader.client, run, { name: "logs/run.log" });
      await follower.received(1000);
      assert.equal(follower.messages[0]?.artifact?.complete, false, "the first message describes the unfinished artifact");
      for (let offset = 1000; offset < data.length; offset += 1000) {
        writer.send(chunk(offset, data.subarray(offset, offset + 1000)));
        await follower.received(offset + 1000);
        assert.equal(follower.ended, undefined, "still following before finish");
      }
      writer.send(finish(sha256(data), data.length));
      assert.equal(await follower.finished(), null, "ends cleanly once the upload is finished");
      assert.ok(follower.data().equals(data));
      assert.equal((await writer.call).artifact?.complete, true);
      assert.equal(reader.server.watch.size, 0, "the follower let go of the upload");
    });
  }

  it("waits for an offset not yet committed, and ends at its limit before the upload finishes", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const data = bytes(5000, 32);
    const writer = openUpload(fx.client, run, "tail.log");
    writer.send(chunk(0, data.subarray(0, 1000)));
    await writer.committed(1000);
    const ahead = follow(fx.client, run, { name: "tail.log", offset: 2500, limit: 1500 });
    await eventually(async () => (ahead.messages.length > 0 || ahead.ended !== undefined ? true : undefined), "the artifact message");
    assert.equal(ahead.ended, undefined);
    assert.equal(ahead.data().length, 0);
    writer.send(chunk(1000, data.subarray(1000, 3000)));
    await ahead.received(500);
    writer.send(chunk(3000, data.subarray(3000, 5000)));
    assert.equal(await ahead.finished(), null, "ends at its limit");
    assert.ok(ahead.data().equals(data.subarray(2500, 4000)));
    assert.equal((await fx.client.stat({ runId: run.runId, name: "tail.log" }, auth(run.token))).artifact?.complete, false, "the upload is still open");
    // Without follow, an unfinished upload reads as far as it is committed.
    const now = await download(fx.client, run.token, { runId: run.runId, name: "tail.log" });
    assert.ok(now.data.equals(data));
    assert.equal(now.artifact?.complete, false);
    writer.end();
  });

  it("ends with DATA_LOSS when the followed upload fails its digest check", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const writer = openUpload(fx.client, run, "doomed.log");
    writer.send(chunk(0, bytes(100, 33)));
    await writer.committed(100);
    const follower = follow(fx.client, run, { name: "doomed.log" });
    await follower.received(100);
    writer.send(finish(sha256(Buffer.from("not it")), 100));
    assert.equal((await follower.finished())?.code, Code.DataLoss);
    assert.equal((await failure(writer.call)).code, Code.DataLoss);
  });

  it("ends followers and uploads with UNAVAILABLE when the server drains, keeping what was committed", async () => {
    const draining = await startArtifactFixture({ CORRAL_ARTIFACT_FOLLOW_POLL: "60s" }, { database: fx.database, sandbox: fx.sandbox });
    const run = await seedLaunchedRun(fx.sql);
    const writer = openUpload(draining.client, run, "drained.log");
    writer.send(chunk(0, bytes(2000, 35)));
    await writer.committed(2000);
    const follower = follow(draining.client, run, { name: "drained.log" });
    await follower.received(2000);
    await draining.close();
    assert.equal((await follower.finished())?.code, Code.Unavailable, "a cut-off follow must not look finished");
    assert.equal((await failure(writer.call)).code, Code.Unavailable);
    // Another replica resumes from what was committed.
    assert.equal((await fx.client.queryUpload({ uploadId: writer.uploadId }, auth(run.token))).committedOffset, 2000n);
  });

  it("lets go of the upload when the follower cancels", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const writer = openUpload(fx.client, run, "cancelled-follow.log");
    writer.send(chunk(0, bytes(10, 34)));
    await writer.committed(10);
    const follower = follow(fx.client, run, { name: "cancelled-follow.log" });
    await follower.received(10);
    assert.equal(fx.server.watch.size, 1);
    follower.abort();
    assert.equal((await follower.finished())?.code, Code.Canceled);
    await eventually(async () => (fx.server.watch.size === 0 ? true : undefined), "the server to drop the follower");
    writer.end();
  });
});
