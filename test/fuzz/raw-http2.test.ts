import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import fc from "fast-check";
import { SERVICE_TOKEN, startArtifactFixture, type ArtifactFixture } from "../artifact/support.ts";
import { assertServing, withEnv } from "./support/serving.ts";
import { countCase, reportCases, totalFuzzRuns } from "./support/fuzz-runs.ts";

const STAT = "/corral.artifact.v1.ArtifactService/Stat";
const UPLOAD = "/corral.artifact.v1.ArtifactService/Upload";
const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** A gRPC length-prefixed message: flag, declared length, payload (which may not match it). */
const envelope = (flag: number, declared: number, payload: Uint8Array) => {
  const head = Buffer.alloc(5);
  head.writeUInt8(flag, 0);
  head.writeUInt32BE(declared >>> 0, 1);
  return Buffer.concat([head, payload]);
};

interface Answer {
  httpStatus?: number;
  grpcStatus?: number;
  rstCode: number;
}

/** One stream on its own connection: headers, then the body, then END_STREAM; what came back. */
function rawCall(url: string, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  const session = http2.connect(url);
  session.on("error", () => undefined);
  return new Promise<Answer>((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${SERVICE_TOKEN}`,
      ...headers,
    });
    const answer: Answer = { rstCode: 0 };
    const timer = setTimeout(() => reject(new Error(`no answer to ${path} within 5s`)), 5000);
    req.on("response", (h) => {
      answer.httpStatus = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) answer.grpcStatus = Number(h["grpc-status"]);
    });
    req.on("trailers", (t) => {
      if (t["grpc-status"] !== undefined) answer.grpcStatus = Number(t["grpc-status"]);
    });
    req.on("error", () => undefined);
    req.on("data", () => undefined);
    req.on("close", () => {
      clearTimeout(timer);
      answer.rstCode = req.rstCode ?? 0;
      session.close();
      resolve(answer);
    });
    req.end(body);
  });
}

/** A raw TCP connection that writes the bytes and waits for the server to close it. */
function rawSocket(url: string, bytes: Buffer, withinMs = 5000): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise<void>((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("the server kept a connection open after garbage"));
    }, withinMs);
    socket.on("data", () => undefined);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe("fuzz: malformed HTTP/2 and gRPC framing against a real artifact service", function () {
  this.timeout(300_000);
  let fixture: ArtifactFixture;
  before(async () => {
    // A short handshake bound: incomplete frames after random bytes are cut off quickly.
    fixture = await withEnv({ CORRAL_HTTP_HANDSHAKE_TIMEOUT: "1s" }, () => startArtifactFixture());
  });
  after(async () => {
    reportCases("raw HTTP/2");
    await fixture?.close();
  });
  afterEach(async () => {
    await assertServing(fixture.url);
  });

  it("a bad preface, an HTTP/1.1 request and garbage after a good preface each get the connection closed", async () => {
    await rawSocket(fixture.url, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await rawSocket(fixture.url, Buffer.from("PRI * HTTP/9.9\r\n\r\nXX\r\n\r\n"));
    await rawSocket(fixture.url, Buffer.concat([Buffer.from(PREFACE), Buffer.from([0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4])]));
    // A frame header declaring 16 MiB of SETTINGS: over the frame size limit.
    await rawSocket(fixture.url, Buffer.concat([Buffer.from(PREFACE), Buffer.from([0xff, 0xff, 0xff, 4, 0, 0, 0, 0, 0])]));
  });

  it("random bytes on a raw connection, with or without a good preface, get it closed", async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 512 }), async (preface, bytes) => {
        countCase("raw bytes");
        await rawSocket(fixture.url, Buffer.concat([Buffer.from(preface ? PREFACE : ""), bytes]), 3000);
      }),
      { numRuns: Math.max(20, Math.ceil(totalFuzzRuns / 200)) },
    );
  });

  it("broken gRPC envelopes get a gRPC status: truncated, compressed without an encoding, oversized, extra, not protobuf", async () => {
    const cases: [string, Buffer, number[]][] = [
      ["declared 100, sent 3", envelope(0, 100, Buffer.from("abc")), [3]],
      ["half a length prefix", Buffer.from([0, 0]), [3]],
      ["compressed flag without grpc-encoding", envelope(1, 3, Buffer.from("abc")), [3]],
      ["declared 4 GiB", envelope(0, 0xfffffff0, Buffer.from("abc")), [8]],
      ["two messages to a unary method", Buffer.concat([envelope(0, 0, Buffer.alloc(0)), envelope(0, 0, Buffer.alloc(0))]), [3, 12]],
      ["bytes that are not protobuf", envelope(0, 4, Buffer.from([0xff, 0xff, 0xff, 0xff])), [3]],
      ["no message at all", Buffer.alloc(0), [3, 12]],
    ];
    for (const [what, body, codes] of cases) {
      const answer = await rawCall(fixture.url, STAT, body);
      assert.ok(answer.grpcStatus !== undefined && codes.includes(answer.grpcStatus), `${what}: ${JSON.stringify(answer)}`);
    }
    const upload = await rawCall(fixture.url, UPLOAD, envelope(0, 50, Buffer.from("ab")));
    assert.equal(upload.grpcStatus, 3, `truncated upload stream: ${JSON.stringify(upload)}`);
  });

  it("random envelopes to unary and streaming methods always end with a status or a reset, never a hang", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(STAT, UPLOAD, "/corral.artifact.v1.ArtifactService/Download", "/corral.artifact.v1.ArtifactService/List"),
        fc.array(fc.tuple(fc.constantFrom(0, 1, 2, 0x80), fc.option(fc.nat(), { nil: undefined }), fc.uint8Array({ maxLength: 64 })), { maxLength: 4 }),
        fc.integer({ min: 0, max: 8 }),
        async (path, messages, cut) => {
          countCase("raw envelopes");
          const body = Buffer.concat(messages.map(([flag, declared, payload]) => envelope(flag, declared ?? payload.length, payload)));
          const answer = await rawCall(fixture.url, path, body.subarray(0, Math.max(0, body.length - cut)));
          assert.ok(answer.grpcStatus !== undefined || answer.rstCode !== 0, JSON.stringify(answer));
          assert.ok(answer.grpcStatus !== 2 && answer.grpcStatus !== 13, `a fault code for bad input: ${JSON.stringify(answer)}`);
        },
      ),
      { numRuns: Math.max(50, Math.ceil(totalFuzzRuns / 50)) },
    );
  });

  it("a wrong content type or an unknown method is refused without a gRPC body", async () => {
    const xml = await rawCall(fixture.url, STAT, envelope(0, 0, Buffer.alloc(0)), { "content-type": "application/xml" });
    assert.equal(xml.httpStatus, 415);
    const unknown = await rawCall(fixture.url, "/corral.nope.v1.Nope/Nothing", envelope(0, 0, Buffer.alloc(0)));
    assert.ok(unknown.httpStatus === 404 || unknown.grpcStatus === 12, JSON.stringify(unknown));
  });

  it("streams reset mid-upload leave nothing behind: the server serves, and its handles stay bounded", async () => {
    const before = process.getActiveResourcesInfo().length;
    for (let i = 0; i < 200; i++) {
      const session = http2.connect(fixture.url);
      session.on("error", () => undefined);
      const req = session.request({ ":method": "POST", ":path": UPLOAD, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${SERVICE_TOKEN}` });
      req.on("error", () => undefined);
      req.write(envelope(0, 1000, Buffer.alloc(10)));
      await new Promise((resolve) => setTimeout(resolve, 2));
      req.close(http2.constants.NGHTTP2_CANCEL);
      session.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    await assertServing(fixture.url);
    const after = process.getActiveResourcesInfo().length;
    assert.ok(after - before < 20, `active handles grew from ${before} to ${after}`);
  });
});
