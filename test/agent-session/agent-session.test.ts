import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { loadConfig } from "@corral/plumbing/config.ts";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import { createSql } from "@corral/plumbing/db/sql.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { startControlPlane, type ControlPlane } from "@corral/control-plane/start-control-plane.ts";
import { CancelRequest } from "../../agent/src/pipeline/cancel-request.ts";
import { runAgent, type RunAgentOptions } from "../../agent/src/attempt/run-agent.ts";
import type { RunPipelineOptions } from "../../agent/src/attempt/pipeline-port.ts";
import { openAttach } from "../support/attach-client.ts";
import { startCuttingProxy } from "../support/cutting-proxy.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import {
  aborted,
  capturingHellos,
  countingAttachCalls,
  createFakePipeline,
  FAST_RECONNECT,
  seedAgentRun,
  storedCompletions,
  storedEvents,
  testLogger,
  waitFor,
  type StoredEvent,
} from "./support.ts";

const SUCCESS = { status: "succeeded" as const, result: { commitSha: "a".repeat(40), branch: "corral/test", changedFiles: ["a.txt"] } };
const text = (value: string) => new TextEncoder().encode(value);
const logOf = (events: StoredEvent[], step: string) =>
  events
    .filter((e) => e.type === "log.chunk" && e.payload.logChunk?.step === step)
    .map((e) => Buffer.from(e.payload.logChunk!.data as string, "base64").toString("utf8"))
    .join("");
const assertContiguous = (events: StoredEvent[]) =>
  assert.deepEqual(events.map((e) => e.sequence), events.map((_, i) => i + 1), "sequences are 1..n, each once");

/** Emits `lines` as output of a step, yielding now and then so the stream drains while the step "runs". */
async function emitLines(options: RunPipelineOptions, step: string, lines: string[]): Promise<void> {
  for (const [index, line] of lines.entries()) {
    options.observer.output({ step, stream: "stdout", data: text(line) });
    if (index % 10 === 0) await delay(1);
  }
}

/** A pipeline whose agent step prints "before", waits for `release()`, prints "after" and succeeds. */
function pausedPipeline() {
  const released = Promise.withResolvers<void>();
  const pipeline = createFakePipeline(async (options) => {
    options.observer.phaseChanged("agent");
    options.observer.stepStarted({ name: "agent", kind: "agent", timeoutMs: 60_000 });
    await emitLines(options, "agent", ["before\n"]);
    await released.promise;
    await emitLines(options, "agent", ["after\n"]);
    options.observer.stepFinished({ name: "agent", kind: "agent", outcome: "succeeded", exitCode: 0, durationMs: 5 });
    return SUCCESS;
  });
  return { pipeline, release: () => released.resolve() };
}

describe("agent session against the control plane", () => {
  let fx: ControlPlaneFixture;
  before(async () => {
    fx = await startControlPlaneFixture({ CORRAL_MAX_EVENT_PAYLOAD_BYTES: "4096", CORRAL_HEARTBEAT_INTERVAL: "200ms", CORRAL_LEASE_DURATION: "1500ms" });
  });
  after(() => fx.close());

  const agentOptions = (run: { runId: string; token: string }, extra: Partial<RunAgentOptions> & Pick<RunAgentOptions, "pipeline">): RunAgentOptions => ({
    controlPlaneUrl: fx.url,
    runId: run.runId,
    attempt: 1,
    credential: run.token,
    agentVersion: "0.0.0-test",
    workDir: "/nonexistent/work",
    logger: testLogger(),
    reconnect: FAST_RECONNECT,
    ...extra,
  });

  it("attaches, sends the attempt's events in order and completes; each is stored exactly once", async () => {
    const run = await seedAgentRun(fx.sql);
    const lines = Array.from({ length: 400 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}\n`);
    const pipeline = createFakePipeline(async (options) => {
      options.observer.phaseChanged("preparing");
      options.observer.phaseChanged("cloning");
      options.observer.stepStarted({ name: "clone", kind: "clone", timeoutMs: 60_000 });
      await emitLines(options, "clone", lines);
      options.observer.stepFinished({ name: "clone", kind: "clone", outcome: "succeeded", exitCode: 0, durationMs: 12 });
      return SUCCESS;
    });

    const exit = await runAgent(agentOptions(run, { pipeline }));

    assert.equal(exit.exitCode, 0, exit.message);
    const [call] = pipeline.calls;
    assert.equal(call?.runId, run.runId);
    assert.equal(call?.workDir, "/nonexistent/work");
    assert.equal(call?.spec.timeouts.stepMs, 60_000, "the assignment's spec reaches the pipeline");
    const events = await storedEvents(fx.sql, run.runId);
    assertContiguous(events);
    const types = events.map((e) => e.type).filter((t) => t !== "log.chunk");
    assert.deepEqual(types, [
      "run.started",
      "run.phase_changed",
      "run.phase_changed",
      "step.started",
      "step.finished",
      "run.phase_changed",
      "run.completion_attempted",
    ]);
    assert.equal(events[0]?.payload.runStarted?.agentVersion, "0.0.0-test");
    assert.deepEqual(events.filter((e) => e.type === "run.phase_changed").map((e) => [e.payload.phaseChanged?.previous, e.payload.phaseChanged?.phase]), [
      [undefined, "PHASE_PREPARING"],
      ["PHASE_PREPARING", "PHASE_CLONING"],
      ["PHASE_CLONING", "PHASE_FINISHING"],
    ]);
    assert.equal(logOf(events, "clone"), lines.join(""), "the output arrives whole, in order");
    const chunks = events.filter((e) => e.type === "log.chunk");
    assert.ok(chunks.length < lines.length / 2, `output is coalesced into few chunks (${chunks.length})`);
    assert.ok(chunks.every((e) => Buffer.from(e.payload.logChunk!.data as string, "base64").length <= 1024), "chunks stay well below the 4 KiB event limit");

    const completions = await storedCompletions(fx.sql, run.runId);
    assert.equal(completions.length, 1);
    assert.deepEqual([completions[0]!.status, completions[0]!.conflict, completions[0]!.result.commitSha], ["succeeded", false, "a".repeat(40)]);
    assert.equal(events.at(-1)?.payload.completionAttempted?.idempotencyKey, completions[0]!.idempotency_key, "completion_attempted names the key sent");
  });

  it("keeps the lease with heartbeats through a quiet step, on one stream", async () => {
    const run = await seedAgentRun(fx.sql);
    const calls = countingAttachCalls();
    const pipeline = createFakePipeline(async () => {
      await delay(3500); // more than twice the 1.5 s lease without a single event
      return SUCCESS;
    });
    const exit = await runAgent(agentOptions(run, { pipeline, interceptors: [calls.interceptor] }));
    assert.equal(exit.exitCode, 0, exit.message);
    assert.equal(calls.count, 1, "the stream was never lost for want of heartbeats");
  });

  it("paces events under the stream's rate limit instead of being cut off", async () => {
    const limited = await startControlPlaneFixture({ CORRAL_MAX_EVENTS_PER_SECOND: "100", CORRAL_MAX_EVENTS_BURST: "20" });
    try {
      const run = await seedAgentRun(limited.sql);
      const calls = countingAttachCalls();
      const pipeline = createFakePipeline(async ({ observer }) => {
        for (let i = 0; i < 150; i++) observer.stepStarted({ name: `step-${i}`, kind: "validation", timeoutMs: 1000 });
        return SUCCESS;
      });
      const exit = await runAgent(agentOptions(run, { controlPlaneUrl: limited.url, pipeline, interceptors: [calls.interceptor] }));
      assert.equal(exit.exitCode, 0, exit.message);
      assert.equal(calls.count, 1, "no RESOURCE_EXHAUSTED ended a stream");
      const events = await storedEvents(limited.sql, run.runId);
      assertContiguous(events);
      assert.equal(events.filter((e) => e.type === "step.started").length, 150);
    } finally {
      await limited.close();
    }
  });

  it("fits a completion with a huge list of changed files into the stream's message limit", async () => {
    const small = await startControlPlaneFixture({ CORRAL_MAX_MESSAGE_BYTES: "8192" });
    try {
      const run = await seedAgentRun(small.sql);
      const changedFiles = Array.from({ length: 2000 }, (_, i) => `src/generated/module-${i}/index.ts`);
      const lines = Array.from({ length: 50 }, () => `${"y".repeat(500)}\n`);
      const pipeline = createFakePipeline(async (options) => {
        // 25 KB of output at once, through 8 KB messages.
        for (const line of lines) options.observer.output({ step: "agent", stream: "stdout", data: text(line) });
        return { status: "succeeded", result: { ...SUCCESS.result, changedFiles } };
      });
      const calls = countingAttachCalls();
      const exit = await runAgent(agentOptions(run, { controlPlaneUrl: small.url, pipeline, interceptors: [calls.interceptor] }));
      assert.equal(exit.exitCode, 0, exit.message);
      assert.equal(calls.count, 1, "nothing was refused for its size");
      const [completion] = await storedCompletions(small.sql, run.runId);
      const listed = completion?.result.changedFiles ?? [];
      assert.ok(listed.length > 0 && listed.length < 2000);
      assert.deepEqual(listed, changedFiles.slice(0, listed.length), "a prefix of the list, in order");
      assert.equal(completion?.reason, `changed_files lists ${listed.length} of 2000 files`);
      assert.equal(logOf(await storedEvents(small.sql, run.runId), "agent"), lines.join(""));
    } finally {
      await small.close();
    }
  });

  describe("reconnecting", () => {
    let database: ControlPlaneFixture | undefined;
    let replacement: ControlPlane | undefined;
    afterEach(async () => {
      await replacement?.close(0);
      await database?.artifacts?.close(); // the fixture's own close is not used: its control plane is closed mid-test
      await database?.database.drop();
      replacement = database = undefined;
    });

    it("survives a control plane restart: reconnects with backoff, resends from the ack, loses and duplicates nothing", async () => {
      database = await startControlPlaneFixture({ CORRAL_MAX_EVENT_PAYLOAD_BYTES: "4096", CORRAL_HEARTBEAT_INTERVAL: "200ms" });
      const first = database;
      const port = first.controlPlane.server.port;
      const run = await seedAgentRun(first.sql);
      const calls = countingAttachCalls();
      const before = Array.from({ length: 300 }, (_, i) => `before ${i}\n`);
      const during = Array.from({ length: 300 }, (_, i) => `during ${i}\n`);
      const gate = Promise.withResolvers<void>();
      const midway = Promise.withResolvers<void>();
      const pipeline = createFakePipeline(async (options) => {
        options.observer.phaseChanged("agent");
        options.observer.stepStarted({ name: "agent", kind: "agent", timeoutMs: 60_000 });
        await emitLines(options, "agent", before.slice(0, 150));
        midway.resolve();
        await emitLines(options, "agent", before.slice(150)); // the stream dies somewhere in here
        await gate.promise;
        await emitLines(options, "agent", during); // while the control plane is down: kept in the outbox
        options.observer.stepFinished({ name: "agent", kind: "agent", outcome: "succeeded", exitCode: 0, durationMs: 5 });
        return SUCCESS;
      });

      const agent = runAgent(agentOptions(run, { controlPlaneUrl: first.url, pipeline, interceptors: [calls.interceptor] }));
      await midway.promise;
      await first.controlPlane.close(0); // mid-stream: some events stored, some in flight, more coming
      gate.resolve();
      await waitFor(() => calls.count >= 3, "reconnect attempts against the stopped control plane");
      const config = loadConfig(controlPlaneConfig, { DATABASE_URL: first.database.url, CORRAL_CONTROL_PLANE_LISTEN: `127.0.0.1:${port}`, CORRAL_HEARTBEAT_INTERVAL: "200ms" });
      replacement = await startControlPlane(config, testLogger("control-plane"));

      const exit = await agent;
      assert.equal(exit.exitCode, 0, exit.message);
      const sql = createSql(replacement.database.orm);
      const events = await storedEvents(sql, run.runId);
      assertContiguous(events);
      assert.equal(logOf(events, "agent"), before.join("") + during.join(""), "every byte of output, once, in order");
      assert.equal(events.filter((e) => e.type === "run.started").length, 1);
      assert.equal(events.at(-1)?.type, "run.completion_attempted");
      const completions = await storedCompletions(sql, run.runId);
      assert.deepEqual(completions.map((c) => [c.status, c.conflict]), [["succeeded", false]]);
      const attempts = await sql.one<{ lease_epoch: string }>("select lease_epoch from attempts where run_id = ?", [run.runId]);
      assert.equal(attempts?.lease_epoch, "2", "exactly one re-attach succeeded");
    });
  });

  describe("cancellation", () => {
    it("surfaces a pushed cancel to the attempt once, with its grace, and completes as cancelled", async () => {
      const run = await seedAgentRun(fx.sql);
      const release = Promise.withResolvers<void>();
      let seen: unknown;
      const pipeline = createFakePipeline(async ({ observer, signal }) => {
        observer.phaseChanged("agent");
        observer.stepStarted({ name: "agent", kind: "agent", timeoutMs: 60_000 });
        seen = await aborted(signal);
        await release.promise; // the step takes its grace to stop, meanwhile the cancel is pushed again
        observer.stepFinished({ name: "agent", kind: "agent", outcome: "cancelled", signal: "SIGTERM", durationMs: 3, message: "cancelled" });
        return { status: "cancelled", reason: `cancelled: ${(seen as Error).message}` };
      });

      const agent = runAgent(agentOptions(run, { pipeline }));
      await pipeline.started;
      await waitFor(async () => (await storedEvents(fx.sql, run.runId)).some((e) => e.type === "step.started"), "the step to start");
      const cancel = JSON.stringify({ runId: run.runId, reason: "user asked", graceMs: 1500 });
      await fx.sql.run("select pg_notify('corral_cancel', ?)", [cancel]);
      await waitFor(() => seen !== undefined, "the pipeline's signal to abort");
      await fx.sql.run("select pg_notify('corral_cancel', ?)", [cancel]);
      await delay(300);
      release.resolve();
      const exit = await agent;

      assert.equal(exit.exitCode, 0, exit.message);
      assert.ok(seen instanceof CancelRequest, "the abort reason carries the cancel");
      assert.equal(seen.message, "user asked");
      assert.equal(seen.graceMs, 1500);
      const events = await storedEvents(fx.sql, run.runId);
      assertContiguous(events);
      const observed = events.filter((e) => e.type === "run.cancellation_observed");
      assert.equal(observed.length, 1, "surfaced once");
      assert.deepEqual([observed[0]!.payload.cancellationObserved?.reason, observed[0]!.payload.cancellationObserved?.grace], ["user asked", "1.500s"]);
      assert.ok(observed[0]!.sequence < events.find((e) => e.type === "run.completion_attempted")!.sequence);
      const [completion] = await storedCompletions(fx.sql, run.runId);
      assert.deepEqual([completion?.status, completion?.reason], ["cancelled", "cancelled: user asked"]);
    });

    it("cancels before the pipeline starts when the cancel was requested before the agent attached", async () => {
      const run = await seedAgentRun(fx.sql);
      await fx.sql.run("update runs set cancel_requested_at = now(), cancel_reason = 'changed my mind', status = 'cancelling' where id = ?", [run.runId]);
      let abortedAtStart: boolean | undefined;
      const pipeline = createFakePipeline(async ({ signal }) => {
        // The control plane sends the pending cancel right after the welcome; give it a moment.
        await Promise.race([aborted(signal), delay(2000)]);
        abortedAtStart = signal.aborted;
        return { status: "cancelled", reason: "cancelled before step \"clone\"" };
      });
      const exit = await runAgent(agentOptions(run, { pipeline }));
      assert.equal(exit.exitCode, 0, exit.message);
      assert.equal(abortedAtStart, true);
      const events = await storedEvents(fx.sql, run.runId);
      assert.equal(events.find((e) => e.type === "run.cancellation_observed")?.payload.cancellationObserved?.reason, "changed my mind");
    });

    it("cancels the attempt when the agent is asked to stop, and still completes", async () => {
      const run = await seedAgentRun(fx.sql);
      const stop = new AbortController();
      const pipeline = createFakePipeline(async ({ signal }) => {
        await aborted(signal);
        return { status: "cancelled", reason: "cancelled during step \"agent\": the agent was asked to stop" };
      });
      const agent = runAgent(agentOptions(run, { pipeline, signal: stop.signal }));
      await pipeline.started;
      stop.abort();
      const exit = await agent;
      assert.equal(exit.exitCode, 0, exit.message);
      assert.ok((pipeline.calls[0]!.signal.reason as Error) instanceof CancelRequest);
      const [completion] = await storedCompletions(fx.sql, run.runId);
      assert.equal(completion?.status, "cancelled");
    });
  });

  describe("final errors", () => {
    it("stops at UNAUTHENTICATED without retrying, and never runs the pipeline", async () => {
      const run = await seedAgentRun(fx.sql);
      const calls = countingAttachCalls();
      const pipeline = createFakePipeline(async () => SUCCESS);
      const exit = await runAgent(
        agentOptions({ runId: run.runId, token: mintCredential().token }, { pipeline, interceptors: [calls.interceptor], reconnect: { initialDelayMs: 1, maxDelayMs: 5, giveUpAfterMs: 10_000 } }),
      );
      assert.equal(exit.exitCode, 1);
      assert.equal(exit.failure?.kind, "unauthenticated");
      assert.match(exit.message, /refused the attempt's credential/);
      await delay(300);
      assert.equal(calls.count, 1, "one attempt, no retry storm");
      assert.equal(pipeline.calls.length, 0);
    });

    it("stops at FAILED_PRECONDITION for a run that is already finished", async () => {
      const run = await seedAgentRun(fx.sql);
      await fx.sql.run("update runs set status = 'failed', finished_at = now() where id = ?", [run.runId]);
      const calls = countingAttachCalls();
      const exit = await runAgent(agentOptions(run, { pipeline: createFakePipeline(async () => SUCCESS), interceptors: [calls.interceptor], reconnect: { initialDelayMs: 1, maxDelayMs: 5 } }));
      assert.equal(exit.exitCode, 1);
      assert.equal(exit.failure?.kind, "refused");
      assert.match(exit.message, /already failed/);
      assert.equal(calls.count, 1);
    });

    it("gives up when the control plane stays unreachable", async () => {
      const calls = countingAttachCalls();
      const exit = await runAgent({
        ...agentOptions({ runId: "00000000-0000-4000-8000-000000000000", token: mintCredential().token }, { pipeline: createFakePipeline(async () => SUCCESS) }),
        controlPlaneUrl: "http://127.0.0.1:1",
        interceptors: [calls.interceptor],
        reconnect: { initialDelayMs: 10, maxDelayMs: 50, giveUpAfterMs: 500 },
      });
      assert.equal(exit.exitCode, 1);
      assert.equal(exit.failure?.kind, "unreachable");
      assert.ok(calls.count >= 3, `it kept trying with backoff (${calls.count} attempts)`);
    });

    it("a connection reset by the control plane's host (read as ABORTED, without a lease detail) is retried, not taken as a supersede", async () => {
      const run = await seedAgentRun(fx.sql);
      const proxy = await startCuttingProxy({ host: "127.0.0.1", port: fx.controlPlane.server.port });
      try {
        const { pipeline, release } = pausedPipeline();
        const exit = runAgent({ ...agentOptions(run, { pipeline }), controlPlaneUrl: proxy.url });
        await pipeline.started;
        await waitFor(async () => (await storedEvents(fx.sql, run.runId)).length >= 3, "the agent's first events");
        proxy.resetClients();
        await waitFor(() => proxy.connections >= 2, "the agent connecting again");
        release();
        const result = await exit;
        assert.equal(result.exitCode, 0, result.message);
        const events = await storedEvents(fx.sql, run.runId);
        assertContiguous(events);
        assert.equal(logOf(events, "agent"), "before\nafter\n");
      } finally {
        await proxy.close();
      }
    });

    it("a late attach of the agent's own (its hello processed after it gave up) supersedes its stream; it reconnects and finishes", async () => {
      const run = await seedAgentRun(fx.sql);
      const hellos = capturingHellos();
      const calls = countingAttachCalls();
      const { pipeline, release } = pausedPipeline();
      const exit = runAgent(agentOptions(run, { pipeline, interceptors: [hellos.interceptor, calls.interceptor] }));
      await pipeline.started;
      await waitFor(async () => (await storedEvents(fx.sql, run.runId)).length >= 3, "the agent's first events");

      // The agent's own hello again, on a stream it no longer reads: what a hello that reached the
      // control plane after the agent had given up on its stream does.
      const late = openAttach(fx.url);
      late.send({ case: "hello", value: hellos.first() });
      await late.next("welcome");
      await waitFor(() => calls.count >= 2, "the agent attaching again");
      release();
      const result = await exit;
      late.abort();

      assert.equal(result.exitCode, 0, result.message);
      assert.equal(pipeline.calls.length, 1, "the pipeline ran once, uninterrupted");
      const events = await storedEvents(fx.sql, run.runId);
      assertContiguous(events);
      assert.equal(logOf(events, "agent"), "before\nafter\n");
      assert.deepEqual((await storedCompletions(fx.sql, run.runId)).map((c) => [c.status, c.conflict]), [["succeeded", false]]);
    });

    it("a second agent for the same attempt supersedes the first, which stops its pipeline", async () => {
      const run = await seedAgentRun(fx.sql);
      const firstPipeline = createFakePipeline(async ({ observer, signal }) => {
        observer.phaseChanged("agent");
        const reason = await aborted(signal);
        return { status: "cancelled", reason: (reason as Error).message };
      });
      const first = runAgent(agentOptions(run, { pipeline: firstPipeline }));
      await firstPipeline.started;
      await waitFor(async () => (await storedEvents(fx.sql, run.runId)).length >= 2, "the first agent's events");

      const secondPipeline = createFakePipeline(async ({ observer }) => {
        observer.phaseChanged("agent");
        return SUCCESS;
      });
      const second = await runAgent(agentOptions(run, { pipeline: secondPipeline }));
      const firstExit = await first;

      assert.equal(second.exitCode, 0, second.message);
      assert.equal(firstExit.exitCode, 1);
      assert.equal(firstExit.failure?.kind, "superseded");
      const reason = firstPipeline.calls[0]!.signal.reason;
      assert.ok(reason instanceof CancelRequest && /lost the control plane/.test(reason.message), "the superseded agent stopped its pipeline");
      const events = await storedEvents(fx.sql, run.runId);
      assertContiguous(events);
      const starts = events.filter((e) => e.type === "run.started").map((e) => e.sequence);
      assert.equal(starts.length, 2, "the second agent numbered on after the first one's stored events");
      const completions = await storedCompletions(fx.sql, run.runId);
      assert.deepEqual(completions.map((c) => [c.status, c.conflict]), [["succeeded", false]]);
    });
  });
});
