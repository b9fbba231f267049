import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { SERVICE_TOKEN, startArtifactFixture, type ArtifactFixture } from "../artifact/support.ts";
import { assertServing, withEnv } from "./support/serving.ts";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Times the server's health answer while slow clients hold connections: it must stay quick. */
async function servesQuickly(url: string): Promise<void> {
  const started = performance.now();
  await assertServing(url);
  const ms = performance.now() - started;
  assert.ok(ms < 1500, `health took ${Math.round(ms)}ms while slow clients were connected`);
}

describe("slow-loris clients against a real artifact service with short bounds", function () {
  this.timeout(120_000);
  let fixture: ArtifactFixture;
  before(async () => {
    fixture = await withEnv(
      {
        CORRAL_HTTP_HANDSHAKE_TIMEOUT: "500ms",
        CORRAL_HTTP_IDLE_TIMEOUT: "1s",
        CORRAL_HTTP_REQUEST_TIMEOUT: "1s",
        CORRAL_HTTP_STREAM_IDLE_TIMEOUT: "1s",
      },
      () => startArtifactFixture(),
    );
  });
  after(async () => {
    await fixture?.close();
  });

  it("connections sending their preface a byte at a time are closed by the handshake bound, while others are served", async () => {
    const { port } = new URL(fixture.url);
    const closedAfter = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const socket = net.connect(Number(port), "127.0.0.1");
        socket.on("error", () => undefined);
        const opened = performance.now();
        let closed = false;
        socket.on("close", () => (closed = true));
        for (let i = 0; i < PREFACE.length && !closed; i++) {
          socket.write(PREFACE.subarray(i, i + 1));
          await sleep(200);
        }
        const ms = performance.now() - opened;
        socket.destroy();
        return closed ? ms : Infinity;
      }).concat([servesQuickly(fixture.url).then(() => 0)]),
    );
    for (const ms of closedAfter) assert.ok(ms < 2500, `a slow preface was held ${ms}ms`);
  });

  it("a connection that opens no stream is closed once idle", async () => {
    const session = http2.connect(fixture.url);
    session.on("error", () => undefined);
    const opened = performance.now();
    await new Promise<void>((resolve) => session.once("close", () => resolve()));
    const ms = performance.now() - opened;
    assert.ok(ms >= 900 && ms < 4000, `an idle connection lived ${Math.round(ms)}ms`);
  });

  it("a unary request whose body trickles in is reset by the request bound; a stalled upload stream by the stream idle bound", async () => {
    for (const [path, trickle] of [
      ["/corral.artifact.v1.ArtifactService/Stat", true],
      ["/corral.artifact.v1.ArtifactService/Upload", false],
    ] as const) {
      const session = http2.connect(fixture.url);
      session.on("error", () => undefined);
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${SERVICE_TOKEN}` });
      req.on("error", () => undefined);
      req.on("data", () => undefined);
      const opened = performance.now();
      let closed = false;
      const done = new Promise<void>((resolve) => req.once("close", () => resolve()));
      void done.then(() => (closed = true));
      const body = Buffer.from([0, 0, 0, 0, 40, ...Buffer.alloc(40)]);
      for (let i = 0; trickle && i < body.length && !closed; i++) {
        req.write(body.subarray(i, i + 1));
        await sleep(300);
      }
      await Promise.race([done, sleep(5000)]);
      const ms = performance.now() - opened;
      assert.ok(closed, `${path}: a slow stream was still open after ${Math.round(ms)}ms`);
      assert.ok(ms < 4000, `${path}: held ${Math.round(ms)}ms`);
      session.destroy();
      await servesQuickly(fixture.url);
    }
  });
});
