import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { createHash, randomUUID } from "node:crypto";
import { appendFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ArtifactService, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { UploadOffsetMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { createArtifactConnection, type ArtifactConnection } from "../../agent/src/artifacts/artifact-client.ts";
import { createResumableUpload, uploadFile, UploadFailed } from "../../agent/src/artifacts/resumable-upload.ts";
import { STREAM_WINDOW_BYTES } from "@corral/plumbing/server/create-server.ts";
import { bytes, download, sha256, SERVICE_TOKEN, startArtifactFixture, type ArtifactFixture } from "../artifact/support.ts";
import { testLogger } from "../agent-session/support.ts";
import { startCuttingProxy } from "../support/cutting-proxy.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { startTestServer } from "../support/test-server.ts";

const MiB = 1024 * 1024;
const CLIENT = fileURLToPath(new URL("./upload-file-client.ts", import.meta.url));
const FAST = { minDelayMs: 10, maxDelayMs: 100 };

/** Records, per Upload call, the offsets and sizes of the chunks sent; and every QueryUpload answer. */
function recordingCalls() {
  const uploads: { offset: number; length: number }[][] = [];
  const queries: number[] = [];
  const interceptor: Interceptor = (next) => async (request) => {
    if (request.method.name === "Upload" && request.stream) {
      const chunks: { offset: number; length: number }[] = [];
      uploads.push(chunks);
      const messages = request.message as AsyncIterable<UploadRequest>;
      request = {
        ...request,
        message: (async function* () {
          for await (const message of messages) {
            if (message.message.case === "chunk") chunks.push({ offset: Number(message.message.value.offset), length: message.message.value.data.length });
            yield message;
          }
        })(),
      } as typeof request;
    }
    const response = await next(request);
    if (request.method.name === "QueryUpload" && !response.stream) queries.push(Number((response.message as unknown as { committedOffset: bigint }).committedOffset));
    return response;
  };
  return { uploads, queries, interceptor };
}

describe("agent: resumable artifact upload", () => {
  let fx: ArtifactFixture;
  let run: SeededRun;
  let dir: string;
  const connections: ArtifactConnection[] = [];
  const connect = (url: string, credential: string, interceptors: Interceptor[] = []) => {
    const connection = createArtifactConnection({ url, credential, interceptors });
    connections.push(connection);
    return connection.client;
  };

  before(async () => {
    fx = await startArtifactFixture();
    run = await seedLaunchedRun(fx.sql);
    dir = await mkdtemp(join(tmpdir(), "corral-upload-test-"));
  });
  afterEach(() => {
    for (const connection of connections.splice(0)) connection.close();
  });
  after(async () => {
    await fx?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function file(name: string, data: Uint8Array): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, data);
    return path;
  }

  it("streams a file with the attempt's credential and the service stores exactly its bytes", async () => {
    const data = bytes(5 * MiB + 123, 1);
    const calls = recordingCalls();
    const stored = await uploadFile({
      client: connect(fx.url, run.token, [calls.interceptor]),
      runId: run.runId,
      name: "reports/whole.bin",
      path: await file("whole.bin", data),
      size: data.length,
      deadlineMs: 30_000,
      logger: testLogger(),
    });
    assert.deepEqual(stored, { name: "reports/whole.bin", size: data.length, sha256: sha256(data) });
    assert.equal(calls.uploads.length, 1, "one stream");
    assert.equal(calls.uploads[0]!.reduce((sum, c) => sum + c.length, 0), data.length, "every byte sent once");
    assert.ok(calls.uploads[0]!.every((c) => c.length <= MiB), "chunks within the service's limit");
    const back = await download(fx.client, SERVICE_TOKEN, { runId: run.runId, name: "reports/whole.bin" });
    assert.ok(back.data.equals(data));
  });

  it("resumes a stream cut at a random offset from the committed offset, sending only the missing bytes", async function () {
    this.timeout(120_000);
    const target = new URL(fx.url);
    const proxy = await startCuttingProxy({ host: target.hostname, port: Number(target.port) });
    try {
      for (let round = 0; round < 3; round++) {
        // The cut comes after more than the service's HTTP/2 receive window: the client may send
        // that far ahead of what the service has read, and bytes in flight at a cut are lost.
        const size = STREAM_WINDOW_BYTES + 6 * MiB + round * 777;
        const data = bytes(size, 100 + round);
        const cutAt = STREAM_WINDOW_BYTES + 2 * MiB + Math.floor(Math.random() * (size - STREAM_WINDOW_BYTES - 3 * MiB));
        const calls = recordingCalls();
        proxy.cutNextAfter(cutAt);
        const name = `resumed/${round}.bin`;
        const stored = await uploadFile({
          client: connect(proxy.url, run.token, [calls.interceptor]),
          runId: run.runId,
          name,
          path: await file(`resume-${round}.bin`, data),
          size,
          deadlineMs: 60_000,
          logger: testLogger(),
          retry: FAST,
        }).catch((error: unknown) => assert.fail(`round ${round}, cut after ${cutAt} bytes: ${(error as Error).message}`));
        assert.equal(stored.sha256, sha256(data), `round ${round}`);
        assert.ok(calls.uploads.length >= 2, `round ${round}: the cut after ${cutAt} bytes broke the first stream`);
        // The last stream starts exactly at the offset the service said it had committed, and
        // sends each byte from there once.
        const resumedAt = calls.queries.at(-1)!;
        assert.ok(resumedAt > 0 && resumedAt <= cutAt, `round ${round}: resumed at ${resumedAt}, cut at ${cutAt}`);
        const last = calls.uploads.at(-1)!;
        assert.equal(last[0]?.offset, resumedAt, `round ${round}: the resumed stream starts at the committed offset`);
        assert.equal(last.reduce((sum, c) => sum + c.length, 0), size - resumedAt, `round ${round}: only the missing bytes are sent`);
        const back = await download(fx.client, SERVICE_TOKEN, { runId: run.runId, name });
        assert.ok(back.data.equals(data), `round ${round}: stored bytes`);
      }
    } finally {
      await proxy.close();
    }
  });

  it("sends a growing file as it grows, on one stream; a follower sees bytes before the finish", async () => {
    const path = join(dir, "growing.log");
    await writeFile(path, "");
    const calls = recordingCalls();
    const upload = createResumableUpload({ client: connect(fx.url, run.token, [calls.interceptor]), runId: run.runId, name: "live/run.log", contentType: "text/plain", path, logger: testLogger() });
    await waitForStat(fx, run.runId, "live/run.log", 0); // the header alone makes the artifact visible
    const follower = download(fx.client, SERVICE_TOKEN, { runId: run.runId, name: "live/run.log", follow: true });
    let size = 0;
    const seen: number[] = [];
    const hash = createHash("sha256");
    for (let i = 0; i < 5; i++) {
      const line = Buffer.from(`line ${i}\n`);
      await appendFile(path, line);
      hash.update(line);
      size += line.length;
      upload.extend(size);
      const committed = await waitForStat(fx, run.runId, "live/run.log", size);
      seen.push(committed);
    }
    const stored = await upload.finish(size, 10_000);
    assert.equal(stored.sha256, hash.digest("hex"));
    assert.deepEqual(seen, [7, 14, 21, 28, 35], "each extension was committed before the next");
    assert.equal(calls.uploads.length, 1, "one stream for the whole upload");
    const followed = await follower;
    assert.equal(followed.data.toString(), "line 0\nline 1\nline 2\nline 3\nline 4\n");
    assert.ok(followed.messages.length > 1, "the follower got the log in pieces, as it grew");
  });

  it("gives up at once on refusals no retry can change: a bad credential, a taken name", async () => {
    const data = bytes(1000, 3);
    const path = await file("refused.bin", data);
    const bad = recordingCalls();
    const refused = await uploadFile({ client: connect(fx.url, "not-a-credential", [bad.interceptor]), runId: run.runId, name: "refused.bin", path, size: data.length, deadlineMs: 30_000, logger: testLogger(), retry: FAST }).then(
      () => assert.fail("uploaded with a bad credential"),
      (error: unknown) => error,
    );
    assert.ok(refused instanceof UploadFailed);
    assert.equal(refused.code, Code.Unauthenticated);
    assert.equal(bad.uploads.length, 1, "no retry");
    assert.ok(!refused.message.includes("not-a-credential"), "the credential is not quoted");

    await uploadFile({ client: connect(fx.url, run.token), runId: run.runId, name: "taken.bin", path, size: data.length, deadlineMs: 30_000, logger: testLogger() });
    const taken = await uploadFile({ client: connect(fx.url, run.token), runId: run.runId, name: "taken.bin", path, size: data.length, deadlineMs: 30_000, logger: testLogger(), retry: FAST }).catch((error: unknown) => error);
    assert.ok(taken instanceof UploadFailed && taken.code === Code.AlreadyExists, String(taken));
  });

  it("fails, naming the file, when the local file is missing or shorter than announced", async () => {
    const missing = await uploadFile({ client: connect(fx.url, run.token), runId: run.runId, name: "missing.bin", path: join(dir, "nope.bin"), size: 10, deadlineMs: 30_000, logger: testLogger(), retry: FAST }).catch((e: unknown) => e);
    assert.ok(missing instanceof UploadFailed, String(missing));
    assert.match(missing.message, /nope\.bin: ENOENT/);
    const short = await uploadFile({ client: connect(fx.url, run.token), runId: run.runId, name: "short.bin", path: await file("short.bin", bytes(10)), size: 20, deadlineMs: 30_000, logger: testLogger(), retry: FAST }).catch((e: unknown) => e);
    assert.ok(short instanceof UploadFailed, String(short));
    assert.match(short.message, /shorter than the 20 bytes/);
  });

  it("keeps memory flat whatever the file's size (the uploader alone, in its own process)", async function () {
    this.timeout(180_000);
    const block = bytes(MiB, 9);
    const growth: Record<number, number> = {};
    for (const sizeMiB of [128, 512]) {
      const size = sizeMiB * MiB;
      const path = join(dir, `large-${sizeMiB}.bin`);
      await writeFile(path, "");
      for (let i = 0; i < sizeMiB; i++) await appendFile(path, block);
      const { stdout } = await promisify(execFile)(process.execPath, [CLIENT, fx.url, run.token, run.runId, `large-${sizeMiB}.bin`, path, String(size)], { maxBuffer: 1024 * 1024 });
      await rm(path);
      const result = JSON.parse(stdout) as { size: number; sha256: string; baselineRss: number; peakRss: number };
      assert.equal(result.size, size);
      const { artifact } = await fx.client.stat({ runId: run.runId, name: `large-${sizeMiB}.bin` }, { headers: { authorization: `Bearer ${SERVICE_TOKEN}` } });
      assert.equal(artifact?.sha256, result.sha256);
      growth[sizeMiB] = (result.peakRss - result.baselineRss) / MiB;
    }
    // Peak RSS over the process's start settles at a plateau (HTTP/2 and protobuf machinery,
    // chunk buffers the GC has not collected yet) that does not grow with the file.
    const figures = `peak RSS growth ${growth[128]!.toFixed(1)} MiB for 128 MiB, ${growth[512]!.toFixed(1)} MiB for 512 MiB`;
    assert.ok(growth[512]! < 128, figures);
    assert.ok(growth[512]! - growth[128]! < 32, `memory grows with the file: ${figures}`);
  });

  describe("against a hostile service", () => {
    type Behaviour = {
      upload?: (requests: AsyncIterable<UploadRequest>) => Promise<unknown>;
      queryUpload?: () => Promise<unknown>;
    };
    let behaviour: Behaviour = {};
    let uploadCalls = 0;
    let server: Awaited<ReturnType<typeof startTestServer>>;
    before(async () => {
      server = await startTestServer([ArtifactService], (router) =>
        router.service(ArtifactService, {
          async upload(requests) {
            uploadCalls += 1;
            return (await behaviour.upload!(requests)) as never;
          },
          async queryUpload() {
            return (await behaviour.queryUpload!()) as never;
          },
          download: () => {
            throw new ConnectError("no", Code.Unimplemented);
          },
          stat: () => {
            throw new ConnectError("no", Code.Unimplemented);
          },
          list: () => {
            throw new ConnectError("no", Code.Unimplemented);
          },
        }),
      );
    });
    after(() => server?.close(100));
    beforeEach(() => {
      uploadCalls = 0;
    });

    const drain = async (requests: AsyncIterable<UploadRequest>) => {
      let offset = 0;
      for await (const r of requests) if (r.message.case === "chunk") offset = Number(r.message.value.offset) + r.message.value.data.length;
      return offset;
    };
    const attempt = async (deadlineMs = 5000) => {
      const data = bytes(3000, 7);
      const started = performance.now();
      const outcome = await uploadFile({
        client: connect(server.url, "credential"),
        runId: randomUUID(),
        name: "x.bin",
        path: await file(`hostile-${randomUUID()}.bin`, data),
        size: data.length,
        deadlineMs,
        logger: testLogger(),
        retry: FAST,
        chunkBytes: 1000,
      }).catch((error: unknown) => error);
      return { outcome, ms: performance.now() - started, data };
    };

    it("gives up when the service stays unavailable, within the deadline and with backoff between tries", async () => {
      behaviour = { upload: async () => Promise.reject(new ConnectError("down", Code.Unavailable)), queryUpload: async () => Promise.reject(new ConnectError("down", Code.Unavailable)) };
      const { outcome, ms } = await attempt(1000);
      assert.ok(outcome instanceof UploadFailed, String(outcome));
      assert.equal(outcome.code, Code.DeadlineExceeded);
      assert.match(outcome.message, /not stored within 1000 ms; last error: Unavailable: down/);
      assert.ok(ms >= 1000 && ms < 2500, `took ${ms} ms`);
      assert.ok(uploadCalls >= 1 && uploadCalls <= 20, `${uploadCalls} tries in a second: backoff`);
    });

    it("ends a stream that hangs at the deadline", async () => {
      behaviour = { upload: () => new Promise(() => {}) };
      const { outcome, ms } = await attempt(500);
      assert.ok(outcome instanceof UploadFailed && outcome.code === Code.DeadlineExceeded, String(outcome));
      assert.ok(ms < 2000, `took ${ms} ms`);
    });

    it("refuses a committed offset beyond the bytes it has, instead of looping", async () => {
      behaviour = {
        upload: async () => Promise.reject(new ConnectError("reset", Code.Unavailable)),
        queryUpload: async () => ({ committedOffset: 1_000_000n, finished: false }),
      };
      const { outcome } = await attempt();
      assert.ok(outcome instanceof UploadFailed && outcome.code === Code.DataLoss, String(outcome));
      assert.match(outcome.message, /reports 1000000 bytes committed, but only 3000 exist/);
      assert.equal(uploadCalls, 1);
    });

    it("refuses an artifact stored with another digest or size than was sent", async () => {
      behaviour = { upload: async (requests) => ({ committedOffset: BigInt(await drain(requests)), artifact: { complete: true, size: 3000n, sha256: "0".repeat(64) } }) };
      const { outcome } = await attempt();
      assert.ok(outcome instanceof UploadFailed && outcome.code === Code.DataLoss, String(outcome));
      assert.match(outcome.message, /stored 3000 bytes with sha256 0{64}, but 3000 bytes with sha256 [0-9a-f]{64} were sent/);
    });

    it("does not retry DATA_LOSS, RESOURCE_EXHAUSTED or PERMISSION_DENIED", async () => {
      for (const code of [Code.DataLoss, Code.ResourceExhausted, Code.PermissionDenied, Code.InvalidArgument]) {
        uploadCalls = 0;
        behaviour = { upload: async () => Promise.reject(new ConnectError("no", code)) };
        const { outcome } = await attempt();
        assert.ok(outcome instanceof UploadFailed && outcome.code === code, `${Code[code]}: ${String(outcome)}`);
        assert.equal(uploadCalls, 1, Code[code]);
      }
    });

    it("resumes where an offset mismatch says, and retries a stream that ends without storing, up to the deadline", async () => {
      let calls = 0;
      behaviour = {
        upload: async (requests) => {
          calls += 1;
          if (calls === 1) {
            for await (const _ of requests) break;
            throw new ConnectError("offset", Code.FailedPrecondition, undefined, [{ desc: UploadOffsetMismatchSchema, value: { committedOffset: 1000n, offset: 0n } }]);
          }
          return { committedOffset: BigInt(await drain(requests)) }; // never stores it
        },
        queryUpload: async () => ({ committedOffset: 1000n, finished: false }),
      };
      const { outcome } = await attempt(700);
      assert.ok(outcome instanceof UploadFailed && outcome.code === Code.DeadlineExceeded, String(outcome));
      assert.match(outcome.message, /without the artifact being stored/);
      assert.ok(calls >= 3, `${calls} streams`);
    });
  });
});

async function waitForStat(fx: ArtifactFixture, runId: string, name: string, size: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const artifact = await fx.client.stat({ runId, name }, { headers: { authorization: `Bearer ${SERVICE_TOKEN}` } }).then(
      (response) => response.artifact,
      (error: unknown) => {
        if (ConnectError.from(error).code === Code.NotFound) return undefined;
        throw error;
      },
    );
    if (artifact && Number(artifact.size) >= size) return Number(artifact.size);
    if (Date.now() > deadline) assert.fail(`${name} never reached ${size} bytes`);
    await delay(10);
  }
}
