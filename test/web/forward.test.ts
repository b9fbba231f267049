import assert from "node:assert/strict";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { RunService, RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { invalidArgument, notFound } from "@corral/plumbing/errors.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { startServer, type RunningServer } from "@corral/plumbing/server/create-server.ts";
import type { WebServer } from "@corral/web/start-web.ts";
import { deadUrl } from "../support/artifact-service.ts";
import { startWebFixture } from "../support/web.ts";

const TOKEN = "web-forwarding-test-token-0123456789abcdef";
const RUN_ID = "6f1c3a52-0d7e-4a3b-9c51-2f8e7d6b5a41";

/** A stream step the test releases, to tell a forwarded stream from a buffered one. */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

/**
 * An upstream scheduler and artifact service that answer as each test needs and record what
 * reached them: the real contract on a real h2c server, the web service in front of it.
 */
async function startUpstream() {
  const seen = {
    calls: [] as string[],
    authorization: [] as (string | null)[],
    aborted: [] as string[],
    timeoutMs: [] as (number | undefined)[],
  };
  let watchGate = gate();
  const record = (name: string, context: HandlerContext) => {
    seen.calls.push(name);
    seen.authorization.push(context.requestHeader.get("authorization"));
    seen.timeoutMs.push(context.timeoutMs());
    context.signal.addEventListener("abort", () => seen.aborted.push(name), { once: true });
  };
  const server: RunningServer = await startServer({
    name: "upstream",
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ name: "upstream", level: "silent" }),
    services: [RunService, ArtifactService],
    routes(router) {
      router.service(RunService, {
        getRun(request, context) {
          record("getRun", context);
          if (request.runId !== RUN_ID) throw notFound(`run ${request.runId} not found`);
          return { run: { id: RUN_ID, status: RunStatus.RUNNING, currentStep: "agent" } };
        },
        submitRun(_request, context) {
          record("submitRun", context);
          throw invalidArgument([
            { field: "spec.repository_url", description: "is required" },
            { field: "spec.agent.prompt", description: "is required" },
          ]);
        },
        async listRuntimes(_request, context) {
          record("listRuntimes", context);
          await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve(), { once: true }));
          throw new ConnectError("gave up", Code.Canceled);
        },
        async *watchRun(request, context) {
          record("watchRun", context);
          yield { update: { case: "run", value: { id: request.runId, status: RunStatus.RUNNING } } };
          await Promise.race([watchGate.opened, new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }))]);
          context.signal.throwIfAborted();
          for (let sequence = 1n; sequence <= 3n; sequence++) {
            yield { update: { case: "event", value: { attempt: 1, event: { sequence, payload: { case: "progress", value: { message: `step ${sequence}` } } } } } };
          }
        },
      });
      router.service(ArtifactService, {
        async *download(request, context) {
          record("download", context);
          const body = Buffer.from("0123456789".repeat(10));
          const start = Number(request.offset);
          const end = request.limit ? Math.min(body.length, start + Number(request.limit)) : body.length;
          yield { artifact: { runId: request.runId, name: request.name, size: BigInt(body.length), complete: true }, offset: request.offset, data: body.subarray(start, Math.min(end, start + 40)) };
          for (let at = start + 40; at < end; at += 40) yield { offset: BigInt(at), data: body.subarray(at, Math.min(end, at + 40)) };
        },
        stat(request, context) {
          record("stat", context);
          if (request.name !== "attempts/1/run.log") throw notFound(`no artifact ${request.name}`);
          return { artifact: { runId: request.runId, name: request.name, size: 100n, complete: true, sha256: "ab".repeat(32) } };
        },
        list(request, context) {
          record("list", context);
          return { artifacts: [{ runId: request.runId, name: "attempts/1/run.log", size: 100n, complete: true }] };
        },
        queryUpload(_request, context) {
          record("queryUpload", context);
          return { committedOffset: 0n, finished: false };
        },
      });
    },
  });
  return {
    server,
    seen,
    resetGate() {
      watchGate = gate();
      return watchGate;
    },
  };
}

describe("web service: forwarding the contract to the real services", function () {
  this.timeout(30_000);
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let web: WebServer;
  let runs: ReturnType<typeof createClient<typeof RunService>>;
  let artifacts: ReturnType<typeof createClient<typeof ArtifactService>>;

  before(async () => {
    upstream = await startUpstream();
    web = await startWebFixture({ schedulerUrl: upstream.server.url, artifactUrl: upstream.server.url, token: TOKEN });
    // The browser's way in: the Connect protocol over HTTP/1.1.
    const transport = createConnectTransport({ baseUrl: web.server.url, httpVersion: "1.1" });
    runs = createClient(RunService, transport);
    artifacts = createClient(ArtifactService, transport);
  });
  after(async () => {
    await web?.close(100);
    await upstream?.server.close(100);
  });
  beforeEach(() => {
    upstream.seen.calls.length = 0;
    upstream.seen.authorization.length = 0;
    upstream.seen.aborted.length = 0;
    upstream.seen.timeoutMs.length = 0;
  });

  const codeOf = async (call: Promise<unknown>): Promise<ConnectError> => {
    try {
      await call;
    } catch (error) {
      return ConnectError.from(error);
    }
    assert.fail("the call succeeded");
  };

  it("forwards a unary call and its answer", async () => {
    const { run } = await runs.getRun({ runId: RUN_ID });
    assert.equal(run?.id, RUN_ID);
    assert.equal(run?.currentStep, "agent");
    assert.deepEqual(upstream.seen.calls, ["getRun"]);
    assert.deepEqual(upstream.seen.authorization, [null], "the scheduler gets no artifact token");
  });

  it("keeps the upstream's code, message and field violations", async () => {
    const invalid = await codeOf(runs.submitRun({}));
    assert.equal(invalid.code, Code.InvalidArgument);
    assert.equal(invalid.rawMessage, "invalid request: spec.repository_url: is required; spec.agent.prompt: is required");
    assert.deepEqual(
      invalid.findDetails(FieldViolationsSchema).flatMap((d) => d.violations.map((v) => [v.field, v.description])),
      [
        ["spec.repository_url", "is required"],
        ["spec.agent.prompt", "is required"],
      ],
    );
    const missing = await codeOf(runs.getRun({ runId: "0b7d9a9e-0000-4000-8000-000000000000" }));
    assert.equal(missing.code, Code.NotFound);
    assert.equal(missing.rawMessage, "run 0b7d9a9e-0000-4000-8000-000000000000 not found");
  });

  it("forwards a server stream message by message, not at its end", async () => {
    const g = upstream.resetGate();
    const received: string[] = [];
    for await (const message of runs.watchRun({ runId: RUN_ID })) {
      if (message.update.case === "run") {
        received.push("run");
        // The upstream holds the rest until this first message has come through the web service.
        g.open();
      } else if (message.update.case === "event") received.push(`event ${message.update.value.event!.sequence}`);
    }
    assert.deepEqual(received, ["run", "event 1", "event 2", "event 3"]);
  });

  it("ends the upstream call when the browser's ends", async () => {
    upstream.resetGate();
    const abort = new AbortController();
    const stream = runs.watchRun({ runId: RUN_ID }, { signal: abort.signal });
    const first = await stream[Symbol.asyncIterator]().next();
    assert.equal(first.value?.update.case, "run");
    abort.abort();
    const deadline = Date.now() + 5000;
    while (!upstream.seen.aborted.includes("watchRun")) {
      assert.ok(Date.now() < deadline, "the upstream WatchRun was not cancelled");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  it("carries the deadline upstream: DEADLINE_EXCEEDED, and the upstream stops", async () => {
    const error = await codeOf(runs.listRuntimes({}, { timeoutMs: 300 }));
    assert.equal(error.code, Code.DeadlineExceeded);
    assert.ok(upstream.seen.timeoutMs[0]! > 0 && upstream.seen.timeoutMs[0]! <= 300, `the upstream was given ${upstream.seen.timeoutMs[0]} ms`);
    const deadline = Date.now() + 5000;
    while (!upstream.seen.aborted.includes("listRuntimes")) {
      assert.ok(Date.now() < deadline, "the upstream call outlived its deadline");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  it("reads artifacts with its own service token, never one the browser sends", async () => {
    const { artifacts: list } = await artifacts.list({ runId: RUN_ID }, { headers: { authorization: "Bearer not-the-token-the-browser-should-use" } });
    assert.deepEqual(list.map((a) => a.name), ["attempts/1/run.log"]);
    const bytes: Buffer[] = [];
    for await (const message of artifacts.download({ runId: RUN_ID, name: "attempts/1/run.log" })) bytes.push(Buffer.from(message.data));
    assert.equal(Buffer.concat(bytes).toString(), "0123456789".repeat(10));
    assert.deepEqual(upstream.seen.calls, ["list", "download"]);
    assert.deepEqual(upstream.seen.authorization, [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  });

  it("does not serve the artifact service's writes", async () => {
    const error = await codeOf(artifacts.queryUpload({ uploadId: RUN_ID }));
    assert.equal(error.code, Code.Unimplemented);
    assert.deepEqual(upstream.seen.calls, [], "nothing reached the artifact service");
  });

  it("refuses bad input itself, before anything goes upstream", async () => {
    const post = (path: string, body: string, contentType = "application/json") =>
      fetch(`${web.server.url}${path}`, { method: "POST", headers: { "content-type": contentType, "connect-protocol-version": "1" }, body });
    const malformed = await post("/corral.scheduler.v1.RunService/GetRun", "{not json");
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { code: string }).code, "invalid_argument");
    const wrongShape = await post("/corral.scheduler.v1.RunService/GetRun", JSON.stringify({ runId: 42 }));
    assert.equal(wrongShape.status, 400);
    const wrongType = await post("/corral.scheduler.v1.RunService/GetRun", "{}", "text/plain");
    assert.equal(wrongType.status, 415);
    const tooBig = await post("/corral.scheduler.v1.RunService/SubmitRun", JSON.stringify({ spec: { agent: { prompt: "x".repeat(5 * 1024 * 1024) } } }));
    assert.equal(((await tooBig.json()) as { code: string }).code, "resource_exhausted");
    const unknownMethod = await post("/corral.scheduler.v1.RunService/DropDatabase", "{}");
    assert.equal(unknownMethod.status, 404);
    assert.deepEqual(upstream.seen.calls, []);
  });

  it("says UNAVAILABLE when the upstream is down", async () => {
    const down = await startWebFixture({ schedulerUrl: await deadUrl(), artifactUrl: await deadUrl(), token: TOKEN });
    try {
      const client = createClient(RunService, createConnectTransport({ baseUrl: down.server.url, httpVersion: "1.1" }));
      assert.equal((await codeOf(client.getRun({ runId: RUN_ID }))).code, Code.Unavailable);
      const stream = client.watchRun({ runId: RUN_ID });
      assert.equal((await codeOf((async () => { for await (const _ of stream); })())).code, Code.Unavailable);
    } finally {
      await down.close(100);
    }
  });

  describe("the download route", () => {
    const get = (query: string, init?: RequestInit) => fetch(`${web.server.url}/download?${query}`, init);

    it("streams an artifact as an attachment that never renders as a page", async () => {
      const response = await get(new URLSearchParams({ run: RUN_ID, name: "attempts/1/run.log" }).toString());
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "application/octet-stream");
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      assert.equal(response.headers.get("content-disposition"), `attachment; filename="run.log"; filename*=UTF-8''run.log`);
      assert.equal(response.headers.get("content-length"), "100");
      assert.equal(response.headers.get("x-corral-sha256"), "ab".repeat(32));
      assert.equal(await response.text(), "0123456789".repeat(10));
      assert.deepEqual(upstream.seen.authorization, [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
    });

    it("answers bad requests and missing artifacts with a status a browser shows", async () => {
      const bad = await get("run=not-a-uuid&name=x");
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /^run: expected a run id/);
      assert.equal((await get(`run=${RUN_ID}`)).status, 400);
      assert.equal((await get(`run=${RUN_ID}&name=${"n".repeat(513)}`)).status, 400);
      assert.equal((await get(`run=${RUN_ID}&name=x`, { method: "POST" })).status, 405);
      const missing = await get(`run=${RUN_ID}&name=nope.txt`);
      assert.equal(missing.status, 404);
      assert.equal(await missing.text(), "NotFound: no artifact nope.txt\n");
    });

    it("says so when the dashboard has no artifact service token", async () => {
      const tokenless = await startWebFixture({ schedulerUrl: upstream.server.url, artifactUrl: upstream.server.url });
      try {
        const response = await fetch(`${tokenless.server.url}/download?run=${RUN_ID}&name=attempts/1/run.log`);
        assert.equal(response.status, 503);
        assert.match(await response.text(), /no artifact service token/);
        // Forwarded reads go out without one; the artifact service decides (this one does not check).
        await createClient(ArtifactService, createConnectTransport({ baseUrl: tokenless.server.url, httpVersion: "1.1" })).stat({ runId: RUN_ID, name: "attempts/1/run.log" });
        assert.equal(upstream.seen.authorization.at(-1), null);
      } finally {
        await tokenless.close(100);
      }
    });
  });

  describe("the page", () => {
    it("serves the app at every page path, with a policy that allows only its own origin", async () => {
      for (const path of ["/", `/runs/${RUN_ID}`, "/submit", "/runtimes", "/no/such/page"]) {
        const response = await fetch(`${web.server.url}${path}`);
        assert.equal(response.status, 200, path);
        assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
        assert.equal(response.headers.get("cache-control"), "no-cache");
        const policy = response.headers.get("content-security-policy") ?? "";
        assert.match(policy, /default-src 'none'/);
        assert.match(policy, /connect-src 'self'/);
        assert.match(policy, /frame-ancestors 'none'/);
        const html = await response.text();
        assert.match(html, /<script type="module" src="\/assets\/app-[A-Z0-9]+\.js">/);
        assert.doesNotMatch(html, /https?:\/\//, "the page names no other origin");
      }
    });

    it("serves assets by content-hashed name, cached for good, and nothing else", async () => {
      const html = await (await fetch(web.server.url)).text();
      const script = /src="(\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)![1]!;
      const response = await fetch(`${web.server.url}${script}`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.equal(response.headers.get("cache-control"), "public, max-age=31536000, immutable");
      const etag = response.headers.get("etag")!;
      assert.equal((await fetch(`${web.server.url}${script}`, { headers: { "if-none-match": etag } })).status, 304);
      assert.equal((await fetch(`${web.server.url}/assets/app-NOPE.js`)).status, 404);
      assert.equal((await fetch(`${web.server.url}/assets/../../package.json`)).status, 200, "a dot path is normalised to a page, not a file");
      assert.doesNotMatch(await (await fetch(`${web.server.url}/assets/%2e%2e/%2e%2e/package.json`)).text(), /"workspaces"/);
    });

    it("reports health; a drain ends open streams UNAVAILABLE at once, not after the grace", async () => {
      const extra = await startWebFixture({ schedulerUrl: upstream.server.url, artifactUrl: upstream.server.url, token: TOKEN });
      const health = await fetch(`${extra.server.url}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(await health.text(), "ok\n");
      // An open stream is ended UNAVAILABLE by the drain, so the page resumes elsewhere.
      upstream.resetGate();
      const client = createClient(RunService, createConnectTransport({ baseUrl: extra.server.url, httpVersion: "1.1" }));
      const stream = client.watchRun({ runId: RUN_ID })[Symbol.asyncIterator]();
      assert.equal((await stream.next()).value?.update.case, "run");
      const started = Date.now();
      await extra.close(5000);
      assert.ok(Date.now() - started < 2000, `the drain took ${Date.now() - started} ms: it waited for the grace instead of ending the stream`);
      assert.equal((await codeOf(stream.next())).code, Code.Unavailable);
    });
  });
});
