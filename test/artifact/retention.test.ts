import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { UploadRequestSchema, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createArtifactStore, type ArtifactStore } from "@corral/artifact/artifacts/artifact-store.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { createUploadWatch } from "@corral/artifact/downloads/upload-watch.ts";
import { createRetentionStore, type RetentionStore } from "@corral/artifact/retention/retention-store.ts";
import { sweepRetention, type SweepReport } from "@corral/artifact/retention/sweep-retention.ts";
import type { BlobStore } from "@corral/artifact/storage/blob-store.ts";
import { receiveUpload } from "@corral/artifact/uploads/receive-upload.ts";
import type { ArtifactDeps } from "@corral/artifact/uploads/upload-deps.ts";
import { createWriterRegistry } from "@corral/artifact/uploads/writer-registry.ts";
import { ConfigError, loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import {
  blobFiles,
  bytes,
  chunk,
  download,
  expectCode,
  finish,
  header,
  partialFiles,
  SERVICE_TOKEN,
  sha256,
  startArtifactFixture,
  upload,
  wholeUpload,
  type ArtifactFixture,
} from "./support.ts";

const DAY = 86_400_000;
const RETENTION = 30 * DAY;
const logger = createLogger({ name: "retention", level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe("artifact retention sweeper", function () {
  this.timeout(120_000);
  let fx: ArtifactFixture;
  let store: ArtifactStore;
  let retention: RetentionStore;

  before(async () => {
    // The service's own sweeper runs once at start-up on the empty database, then not again
    // during the tests: they run passes themselves.
    fx = await startArtifactFixture({ CORRAL_ARTIFACT_SWEEP_INTERVAL: "24h", CORRAL_RUN_QUOTA_COUNT: "100000" });
    await fx.server.sweeper.sweep();
    store = createArtifactStore(fx.server.database.orm);
    retention = createRetentionStore(fx.server.database.orm);
  });
  after(() => fx?.close());

  const sweep = (overrides: { retentionMs?: number; batchSize?: number; blobs?: BlobStore; retention?: RetentionStore } = {}): Promise<SweepReport> =>
    sweepRetention({ store, retention, blobs: fx.server.blobs, logger, retentionMs: RETENTION, ...overrides });

  /** A run, finished `daysAgo` days ago, or still running (null). */
  async function run(daysAgo: number | null) {
    const seeded = await seedLaunchedRun(fx.sql);
    if (daysAgo !== null) {
      await fx.sql.run("update runs set status = 'completed', finished_at = now() - (? * interval '1 day') where id = ?", [daysAgo, seeded.runId]);
    } else {
      await fx.sql.run("update runs set status = 'running', created_at = now() - interval '90 days' where id = ?", [seeded.runId]);
    }
    return seeded;
  }

  const put = (runId: string, name: string, data: Buffer) => upload(fx.client, SERVICE_TOKEN, wholeUpload({ runId, name }, data));
  const names = async (runId: string) => (await fx.sql.all<{ name: string }>("select name from artifacts where run_id = ? order by name", [runId])).map((r) => r.name);
  const blobPath = (digest: string) => join(fx.storeDir, "blobs", "sha256", digest.slice(0, 2), digest);
  const hasBlob = async (digest: string) =>
    (await fx.server.blobs.hasBlob(digest)) || (await fx.sql.one("select 1 from blobs where sha256 = ?", [digest])) !== undefined;
  const readBack = async (runId: string, name: string) => sha256((await download(fx.client, SERVICE_TOKEN, { runId, name })).data);

  /** An upload that commits `data` and stops without finishing: a live log, for instance. */
  async function openUpload(runId: string, name: string, data: Buffer): Promise<string> {
    const uploadId = randomUUID();
    const response = await upload(fx.client, SERVICE_TOKEN, [header({ uploadId, runId, name }), chunk(0, data)]);
    assert.equal(response.committedOffset, BigInt(data.length));
    return uploadId;
  }

  it("reads CORRAL_ARTIFACT_RETENTION as a duration with days, or off, and rejects anything else naming the variable", () => {
    const parse = (value: string) => loadConfig(artifactConfig, { DATABASE_URL: "postgres://x/y", CORRAL_ARTIFACT_RETENTION: value }).CORRAL_ARTIFACT_RETENTION;
    assert.equal(loadConfig(artifactConfig, { DATABASE_URL: "postgres://x/y" }).CORRAL_ARTIFACT_RETENTION, 30 * DAY);
    assert.equal(parse("7d"), 7 * DAY);
    assert.equal(parse("36h"), 36 * 3_600_000);
    assert.equal(parse("0"), 0);
    assert.equal(parse("off"), 0);
    for (const bad of ["30", "-1d", "1w", "0d", "soon"]) {
      assert.throws(() => parse(bad), (error: unknown) => error instanceof ConfigError && error.variables.includes("CORRAL_ARTIFACT_RETENTION"), bad);
    }
    assert.throws(
      () => loadConfig(artifactConfig, { DATABASE_URL: "postgres://x/y", CORRAL_ARTIFACT_SWEEP_INTERVAL: "0s" }),
      (error: unknown) => error instanceof ConfigError && error.variables.includes("CORRAL_ARTIFACT_SWEEP_INTERVAL"),
    );
  });

  it("deletes the artifacts of runs that finished longer ago than the retention, keeping recent and unfinished runs' and shared blobs", async () => {
    const old = await run(40);
    const recent = await run(1);
    const running = await run(null);
    const own = bytes(50_000, 101);
    const shared = bytes(70_000, 102);
    await put(old.runId, "own.bin", own);
    await put(old.runId, "shared.bin", shared);
    await put(recent.runId, "shared-too.bin", shared);
    const oldLive = await openUpload(old.runId, "attempts/1/run.log", Buffer.from("a log that never finished\n"));
    const runningLive = await openUpload(running.runId, "attempts/1/run.log", Buffer.from("still running\n"));

    const report = await sweep();
    assert.equal(report.runs, 1);
    assert.equal(report.artifacts, 3);
    assert.equal(report.uploads, 3);
    assert.deepEqual(await names(old.runId), []);
    assert.equal(await fx.sql.one("select 1 from uploads where run_id = ?", [old.runId]), undefined);
    assert.equal(await hasBlob(sha256(own)), false, "the old run's own blob is gone, row and bytes");
    assert.equal(await fx.server.blobs.hasBlob(sha256(shared)), true, "a blob another run still refers to stays");
    const partials = await partialFiles(fx);
    assert.ok(!partials.includes(oldLive), "the old run's unfinished upload leaves no data behind");
    assert.ok(partials.includes(runningLive), "a running run keeps its live log, however old the run");
    assert.deepEqual(await names(recent.runId), ["shared-too.bin"]);
    assert.equal(await readBack(recent.runId, "shared-too.bin"), sha256(shared));
    assert.deepEqual(await names(running.runId), ["attempts/1/run.log"]);
    await expectCode(download(fx.client, SERVICE_TOKEN, { runId: old.runId, name: "own.bin" }), Code.NotFound);

    // The name is free again, and an old run's new upload is swept by the next pass.
    assert.equal((await sweep()).runs, 0, "nothing left to do");
    await fx.sql.run("update runs set finished_at = now() - interval '31 days' where id = ?", [recent.runId]);
    await sweep();
    assert.equal(await hasBlob(sha256(shared)), false, "the last reference gone, the shared blob goes");
    assert.deepEqual(await names(running.runId), ["attempts/1/run.log"]);
  });

  it("with retention off keeps every run's artifacts, and still removes blobs nothing refers to, with or without a row", async () => {
    const old = await run(400);
    const kept = bytes(10_000, 103);
    await put(old.runId, "kept.bin", kept);
    // A blob row nothing points at (its artifacts went with a deleted run), and bytes with no row
    // (a finish cut short after the move, never retried).
    const unreferenced = bytes(3000, 104);
    const orphan = bytes(4000, 105);
    for (const data of [unreferenced, orphan]) {
      await mkdir(join(blobPath(sha256(data)), ".."), { recursive: true });
      await writeFile(blobPath(sha256(data)), data);
    }
    await fx.sql.run("insert into blobs (sha256, size) values (?, ?)", [sha256(unreferenced), unreferenced.length]);

    const report = await sweep({ retentionMs: 0 });
    assert.equal(report.runs, 0);
    assert.equal(report.adopted, 1);
    assert.ok(report.blobs >= 2);
    assert.deepEqual(await names(old.runId), ["kept.bin"]);
    assert.equal(await readBack(old.runId, "kept.bin"), sha256(kept));
    assert.equal(await hasBlob(sha256(unreferenced)), false);
    assert.equal(await hasBlob(sha256(orphan)), false);
    await fx.sql.run("delete from artifacts where run_id = ?", [old.runId]);
  });

  it("keeps the bytes of a verified upload whose finish was cut short, so the client's retry completes it", async () => {
    const recent = await run(2);
    const data = bytes(20_000, 106);
    const uploadId = randomUUID();
    const target = { uploadId, runId: recent.runId, name: "cut-short.bin" };
    // The bytes moved into the blob store, then the finish's transaction failed.
    const crashing: ArtifactStore = {
      ...store,
      finish: async (input) => {
        await input.moveBytes();
        throw new Error("crash");
      },
    };
    await assert.rejects(receive(deps({ store: crashing }), [header(target), chunk(0, data), finish(sha256(data), data.length)]), /crash/);
    assert.equal((await store.findUpload(uploadId))?.state, "verified");

    const report = await sweep();
    assert.equal(report.adopted, 1, "the bytes get a row");
    assert.equal(await fx.server.blobs.hasBlob(sha256(data)), true, "and stay: a verified upload refers to them");
    const response = await upload(fx.client, SERVICE_TOKEN, [header(target), finish(sha256(data), data.length)]);
    assert.equal(response.artifact?.complete, true);
    assert.equal(await readBack(recent.runId, "cut-short.bin"), sha256(data));
  });

  it("shares the work between two sweepers running at once (replicas), each thing deleted once", async () => {
    const runs = await Promise.all(Array.from({ length: 24 }, () => run(45)));
    const contents = runs.map((_, i) => bytes(2000 + i, 200 + i));
    await Promise.all(runs.map((r, i) => put(r.runId, "report.bin", contents[i]!)));
    await Promise.all(runs.map((r, i) => put(r.runId, "same-for-all.bin", contents[i % 3]!)));
    const reports = await Promise.all([sweep({ batchSize: 5 }), sweep({ batchSize: 5 })]);
    assert.equal(reports[0]!.runs + reports[1]!.runs, 24, JSON.stringify(reports));
    assert.equal(reports[0]!.artifacts + reports[1]!.artifacts, 48);
    for (const r of runs) assert.deepEqual(await names(r.runId), []);
    for (const data of contents) assert.equal(await hasBlob(sha256(data)), false);
  });

  describe("an upload that deduplicates against a blob while the sweeper deletes it", () => {
    // The old run's artifact is the blob's only reference, so a pass deletes the blob; the
    // recent run's upload of the same content finishes at the same moment. Each test holds one
    // side at the critical point and lets the other run into it.

    it("finishing first: the sweeper leaves the blob the finish holds", async () => {
      const old = await run(40);
      const recent = await run(1);
      const data = bytes(40_000, 107);
      await put(old.runId, "first.bin", data);
      const moved = gate();
      const proceed = gate();
      // The finish stops right after it found the blob's bytes (dedup) and dropped its own.
      const blobs: BlobStore = {
        ...fx.server.blobs,
        async commitPartial(uploadId, digest) {
          await fx.server.blobs.commitPartial(uploadId, digest);
          moved.open();
          await proceed.opened;
        },
      };
      const finishing = receive(deps({ blobs }), wholeUpload({ runId: recent.runId, name: "second.bin" }, data));
      await moved.opened;
      const report = await sweep();
      assert.deepEqual(await names(old.runId), [], "the old run's artifact is deleted");
      assert.equal(report.blobs, 0, "but not the blob a finishing upload has locked");
      proceed.open();
      const response = await finishing;
      assert.equal(response.artifact?.sha256, sha256(data));
      assert.equal(await readBack(recent.runId, "second.bin"), sha256(data));
      assert.equal(sha256(await readFile(blobPath(sha256(data)))), sha256(data));
    });

    it("sweeping first: the finish waits, finds the bytes gone and moves its own in", async () => {
      const old = await run(40);
      const recent = await run(1);
      const data = bytes(40_000, 108);
      await put(old.runId, "first.bin", data);
      const deleting = gate();
      const proceed = gate();
      // The sweeper stops with the blob's row locked and deleted, before its bytes go.
      const slowRetention: RetentionStore = {
        ...retention,
        collectBlobs: (limit, deleteBytes) =>
          retention.collectBlobs(limit, async (digest) => {
            deleting.open();
            await proceed.opened;
            await deleteBytes(digest);
          }),
      };
      const sweeping = sweep({ retention: slowRetention });
      await deleting.opened;
      let finished = false;
      const finishing = receive(deps(), wholeUpload({ runId: recent.runId, name: "second.bin" }, data)).finally(() => {
        finished = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(finished, false, "the finish waits for the blob's row");
      proceed.open();
      assert.equal((await sweeping).blobs, 1);
      const response = await finishing;
      assert.equal(response.artifact?.sha256, sha256(data));
      assert.equal(await readBack(recent.runId, "second.bin"), sha256(data));
    });
  });

  it("never loses a finished artifact's bytes while many uploads of identical and distinct content race the sweeper", async () => {
    const live = await run(null);
    const rounds = 40;
    const shared = [bytes(30_000, 300), bytes(1, 301), bytes(100_000, 302)];
    let sweeping = true;
    let passes = 0;
    let deletedBlobs = 0;
    const sweeper = (async () => {
      while (sweeping) {
        const report = await sweep({ batchSize: 7 });
        passes += 1;
        deletedBlobs += report.blobs;
      }
    })();
    const jitter = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 15));
    const expected = new Map<string, string>();
    try {
      for (let round = 0; round < rounds; round++) {
        // This round's content first belongs to a run of its own, which then expires: the
        // sweeper is about to delete the blob just as the live run's uploads of it finish.
        const old = await run(1);
        const contested = bytes(20_000 + round, 400 + round);
        await put(old.runId, `round-${round}.bin`, contested);
        // Shared content too, so that its references come and go.
        await put(old.runId, "shared.bin", shared[(round + 1) % shared.length]!);
        await fx.sql.run("update runs set finished_at = now() - interval '60 days' where id = ?", [old.runId]);
        const uploads: { name: string; data: Buffer }[] = [
          { name: `contested-${round}-a.bin`, data: contested },
          { name: `contested-${round}-b.bin`, data: contested },
          { name: `shared-${round}.bin`, data: shared[round % shared.length]! },
          { name: `distinct-${round}.bin`, data: bytes(5000 + round, 500 + round) },
        ];
        await Promise.all(
          uploads.map(async ({ name, data }) => {
            await jitter();
            const response = await put(live.runId, name, data);
            assert.equal(response.artifact?.sha256, sha256(data));
            expected.set(name, sha256(data));
          }),
        );
      }
    } finally {
      sweeping = false;
      await sweeper;
    }
    assert.ok(passes > 5, `the sweeper looped (${passes} passes)`);
    assert.ok(deletedBlobs > 0, "the sweeper deleted blobs meanwhile");

    const finished = await fx.sql.all<{ name: string; sha256: string }>(
      "select a.name, b.sha256 from artifacts a join blobs b on b.id = a.blob_id where a.run_id = ? and a.completed_at is not null",
      [live.runId],
    );
    assert.equal(finished.length, expected.size);
    for (const { name, sha256: digest } of finished) {
      assert.equal(digest, expected.get(name), name);
      assert.equal(sha256(await readFile(blobPath(digest))), digest, `${name}: the stored bytes`);
      assert.equal(await readBack(live.runId, name), digest, `${name}: downloaded`);
    }
    assert.ok((await blobFiles(fx)).length >= new Set(expected.values()).size);
  });

  function deps(overrides: Partial<ArtifactDeps> = {}): ArtifactDeps {
    return {
      store,
      blobs: fx.server.blobs,
      writers: createWriterRegistry(),
      watch: createUploadWatch(),
      limits: { maxArtifactBytes: 1 << 30, runQuotaBytes: 1 << 30, runQuotaCount: 100_000 },
      logger,
      followPollMs: 5000,
      ...overrides,
    };
  }
});

async function* requests(messages: Iterable<UploadRequest["message"]>): AsyncGenerator<UploadRequest> {
  for (const message of messages) yield create(UploadRequestSchema, { message } as never);
}

/** One Upload stream through the domain logic, as the service token. */
const receive = (deps: ArtifactDeps, messages: Iterable<UploadRequest["message"]>) => receiveUpload(deps, { kind: "service" }, requests(messages), new AbortController().signal);
