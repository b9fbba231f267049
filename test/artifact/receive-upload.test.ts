import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import fc from "fast-check";
import { UploadRequestSchema, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createArtifactStore, type ArtifactStore } from "@corral/artifact/artifacts/artifact-store.ts";
import type { Principal } from "@corral/artifact/auth/principal.ts";
import { createUploadWatch } from "@corral/artifact/downloads/upload-watch.ts";
import type { BlobStore } from "@corral/artifact/storage/blob-store.ts";
import { createFilesystemBlobStore } from "@corral/artifact/storage/filesystem-blob-store.ts";
import { downloadArtifact } from "@corral/artifact/downloads/download-artifact.ts";
import { receiveUpload } from "@corral/artifact/uploads/receive-upload.ts";
import type { ArtifactDeps } from "@corral/artifact/uploads/upload-deps.ts";
import { createWriterRegistry } from "@corral/artifact/uploads/writer-registry.ts";
import { hashCredential } from "@corral/plumbing/credentials.ts";
import { openDatabase, type Database } from "@corral/plumbing/db/open-database.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { DomainError } from "@corral/plumbing/errors.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { bytes, chunk, finish, header, sha256 } from "./support.ts";

const logger = createLogger({ name: "artifact", level: process.env.TEST_LOG_LEVEL ?? "silent" });

// The upload logic driven directly, with no server: a real database and a real store directory,
// wrapped to watch the order of durable writes and to inject crashes.
describe("receiveUpload (domain, no server)", () => {
  let testDb: TestDatabase;
  let database: Database;
  let sql: Sql;
  let root: string;
  let store: ArtifactStore;
  let blobs: BlobStore;

  before(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, logger });
    sql = createSql(database.orm);
    store = createArtifactStore(database.orm);
  });
  after(async () => {
    await database?.close();
    await testDb?.drop();
  });
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-receive-upload-"));
    blobs = await createFilesystemBlobStore({ root });
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const deps = (overrides: Partial<ArtifactDeps> = {}): ArtifactDeps => ({
    store,
    blobs,
    writers: createWriterRegistry(),
    watch: createUploadWatch(),
    limits: { maxArtifactBytes: 1 << 30, runQuotaBytes: 1 << 30, runQuotaCount: 1000 },
    logger,
    followPollMs: 5000,
    ...overrides,
  });
  const principalOf = (run: SeededRun): Principal => ({ kind: "attempt", runId: run.runId, attempt: run.attempt, tokenHash: hashCredential(run.token) });

  async function* requests(messages: Iterable<UploadRequest["message"]>, pause = 0): AsyncGenerator<UploadRequest> {
    for (const message of messages) {
      if (pause) await new Promise((resolve) => setTimeout(resolve, pause));
      yield create(UploadRequestSchema, { message } as never);
    }
  }

  const codeOf = async (call: Promise<unknown>) => {
    try {
      await call;
    } catch (error) {
      assert.ok(error instanceof DomainError, String(error));
      return error.code;
    }
    return undefined;
  };

  it("never commits an offset to PostgreSQL beyond what the store has synced (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 25 }), fc.nat(2), async (sizes, pause) => {
        const run = await seedLaunchedRun(sql);
        let synced = 0;
        let violations = 0;
        let commits = 0;
        // Watches writes and syncs on the way to disk ...
        const watchedBlobs: BlobStore = {
          ...blobs,
          async openPartial(uploadId, committed) {
            const writer = await blobs.openPartial(uploadId, committed);
            let written = committed;
            return {
              async write(offset, data) {
                await writer.write(offset, data);
                written = Math.max(written, offset + data.byteLength);
              },
              async sync() {
                const covered = written;
                await writer.sync();
                synced = Math.max(synced, covered);
              },
              close: () => writer.close(),
            };
          },
        };
        // ... and every offset on its way to PostgreSQL.
        const watchedStore: ArtifactStore = {
          ...store,
          async commitOffset(input) {
            commits++;
            if (input.offset > synced) violations++;
            return store.commitOffset(input);
          },
        };
        const data = bytes(sizes.reduce((a, b) => a + b, 0), sizes.length);
        const messages: UploadRequest["message"][] = [header({ runId: run.runId, name: "log" })];
        let offset = 0;
        for (const size of sizes) {
          messages.push(chunk(offset, data.subarray(offset, offset + size)));
          offset += size;
        }
        messages.push(finish(sha256(data), data.length));
        const response = await receiveUpload(deps({ blobs: watchedBlobs, store: watchedStore }), principalOf(run), requests(messages, pause), new AbortController().signal);
        assert.equal(response.artifact?.sha256, sha256(data));
        assert.equal(violations, 0, `committed beyond the synced bytes in ${violations} of ${commits} commits`);
      }),
      { numRuns: 25 },
    );
  });

  it("completes a finish cut short after the digest check, with only finish accepted meanwhile", async () => {
    const run = await seedLaunchedRun(sql);
    const data = bytes(70_000, 5);
    const uploadId = randomUUID();
    const target = { uploadId, runId: run.runId, name: "report.bin" };
    // A crash right before the bytes move into the blob store.
    const crashing: BlobStore = { ...blobs, commitPartial: async () => Promise.reject(new Error("crash")) };
    await assert.rejects(receiveUpload(deps({ blobs: crashing }), principalOf(run), requests([header(target), chunk(0, data), finish(sha256(data), data.length)]), new AbortController().signal), /crash/);
    assert.equal((await store.findUpload(uploadId))?.state, "verified");
    assert.equal(await codeOf(receiveUpload(deps(), principalOf(run), requests([header(target), chunk(data.length, Buffer.from("more"))]), new AbortController().signal)), Code.FailedPrecondition);
    const response = await receiveUpload(deps(), principalOf(run), requests([header(target), finish(sha256(data), data.length)]), new AbortController().signal);
    assert.equal(response.artifact?.sha256, sha256(data));
    assert.equal(response.artifact?.complete, true);
  });

  it("completes a finish cut short after the bytes moved into the blob store", async () => {
    const run = await seedLaunchedRun(sql);
    const data = bytes(70_000, 6);
    const uploadId = randomUUID();
    const target = { uploadId, runId: run.runId, name: "report.bin" };
    // A crash after the move, before the database says finished: the partial data is gone.
    const crashing: ArtifactStore = {
      ...store,
      finish: async (input) => {
        await input.moveBytes();
        throw new Error("crash");
      },
    };
    await assert.rejects(receiveUpload(deps({ store: crashing }), principalOf(run), requests([header(target), chunk(0, data), finish(sha256(data), data.length)]), new AbortController().signal), /crash/);
    assert.equal(await blobs.hasBlob(sha256(data)), true);
    // Meanwhile a download finds no partial data and reads the verified bytes from the blob store.
    const pieces: Buffer[] = [];
    for await (const message of downloadArtifact(deps(), principalOf(run), { runId: run.runId, name: "report.bin", offset: 0n, limit: 0n, follow: false } as never, new AbortController().signal)) {
      if (message.data) pieces.push(Buffer.from(message.data));
    }
    assert.ok(Buffer.concat(pieces).equals(data));
    const response = await receiveUpload(deps(), principalOf(run), requests([header(target), finish(sha256(data), data.length)]), new AbortController().signal);
    assert.equal(response.artifact?.sha256, sha256(data));
    // A different digest for those verified bytes stores nothing more.
    const other = { uploadId: randomUUID(), runId: run.runId, name: "other.bin" };
    await assert.rejects(receiveUpload(deps({ store: crashing }), principalOf(run), requests([header(other), chunk(0, data), finish(sha256(data), data.length)]), new AbortController().signal), /crash/);
    assert.equal(await codeOf(receiveUpload(deps(), principalOf(run), requests([header(other), finish(sha256(Buffer.from("x")), data.length)]), new AbortController().signal)), Code.DataLoss);
    assert.equal((await store.findUpload(other.uploadId))?.state, "failed");
  });

  it("stops reading and keeps what it wrote when the call is cancelled", async () => {
    const run = await seedLaunchedRun(sql);
    const uploadId = randomUUID();
    const controller = new AbortController();
    const writers = createWriterRegistry();
    const call = receiveUpload(
      deps({ writers }),
      principalOf(run),
      (async function* () {
        yield* requests([header({ uploadId, runId: run.runId, name: "cancelled" }), chunk(0, bytes(5000, 7))]);
        await new Promise(() => {}); // a client that goes quiet
      })(),
      controller.signal,
    );
    while (Number((await store.findUpload(uploadId))?.committed_offset ?? 0) < 5000) await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort(new Error("cancelled by the client"));
    await assert.rejects(call, /cancelled by the client/);
    assert.equal(writers.active, 0, "the upload is free for a resume");
    assert.equal((await store.findUpload(uploadId))?.committed_offset, "5000");
  });
});
