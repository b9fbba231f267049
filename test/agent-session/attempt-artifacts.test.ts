import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { attemptArtifacts } from "../../agent/src/artifacts/attempt-artifacts.ts";
import { outputOf, parseRunLog } from "../../agent/src/artifacts/run-log.ts";
import { runAgent } from "../../agent/src/attempt/run-agent.ts";
import { deadUrl } from "../support/artifact-service.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import { createFakePipeline, FAST_RECONNECT, seedAgentRun, storedEvents, testLogger, type StoredEvent } from "./support.ts";

const SUCCESS = { status: "succeeded" as const, result: { commitSha: "a".repeat(40), branch: "corral/test", changedFiles: ["a.txt"] } };

const eventBytes = (events: StoredEvent[], step: string) =>
  Buffer.concat(events.filter((e) => e.type === "log.chunk" && e.payload.logChunk?.step === step).map((e) => Buffer.from(e.payload.logChunk!.data as string, "base64")));

describe("agent: the attempt's run log beside its log events", () => {
  let fx: ControlPlaneFixture;
  let workDir: string;
  before(async () => {
    fx = await startControlPlaneFixture({ CORRAL_MAX_EVENT_PAYLOAD_BYTES: "4096" });
    workDir = await mkdtemp(join(tmpdir(), "corral-attempt-artifacts-"));
  });
  after(async () => {
    await fx?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  const artifactsFor = (token: string) => attemptArtifacts({ credential: token, flushIntervalMs: 100, uploadBudgetMs: 10_000, cancelBudgetMs: 3_000 });
  const completionState = async (runId: string) =>
    (await fx.sql.all<{ artifact_state: string | null }>("select artifact_state from completions where run_id = ?", [runId]))[0]?.artifact_state;
  const runLog = async (runId: string, name = "attempts/1/run.log") => {
    const parts: Buffer[] = [];
    for await (const message of fx.artifacts!.client.download({ runId, name }, fx.artifacts!.auth)) parts.push(Buffer.from(message.data));
    return Buffer.concat(parts);
  };

  it("keeps every byte in the run log when the event stream sheds output, and says so", async () => {
    const run = await seedAgentRun(fx.sql);
    // 3000 lines of ~100 bytes against an outbox of 50 events and no room to spill: the live stream must shed.
    const lines = Array.from({ length: 3000 }, (_, i) => `line ${String(i).padStart(5, "0")} ${"x".repeat(88)}\n`);
    const pipeline = createFakePipeline(async (options) => {
      options.observer.stepStarted({ name: "agent", kind: "agent", timeoutMs: 60_000 });
      for (const line of lines) options.observer.output({ step: "agent", stream: "stdout", data: Buffer.from(line) });
      await delay(50);
      options.observer.stepFinished({ name: "agent", kind: "agent", outcome: "succeeded", exitCode: 0, durationMs: 50 });
      return SUCCESS;
    });
    const exit = await runAgent({
      controlPlaneUrl: fx.url,
      runId: run.runId,
      attempt: 1,
      credential: run.token,
      agentVersion: "0.0.0-test",
      workDir,
      logger: testLogger(),
      reconnect: FAST_RECONNECT,
      outbox: { maxEvents: 50, maxSpillBytes: 0 },
      pipeline,
      artifacts: artifactsFor(run.token),
    });
    assert.equal(exit.exitCode, 0, exit.message);
    const events = await storedEvents(fx.sql, run.runId);
    const live = eventBytes(events, "agent");
    const all = Buffer.from(lines.join(""));
    assert.ok(live.length < all.length, "the event stream shed output");
    assert.ok(events.some((e) => e.type === "run.warning" && e.payload.warning?.code === "log_output_dropped"), "and said so");
    assert.ok(outputOf(parseRunLog(await runLog(run.runId))).get("agent stdout")!.equals(all), "the run log has every byte");
    assert.equal(await completionState(run.runId), "complete");
    assert.deepEqual(
      events.filter((e) => e.type === "run.phase_changed").map((e) => e.payload.phaseChanged?.phase),
      ["PHASE_UPLOADING", "PHASE_FINISHING"],
      "the attempt goes through the uploading phase",
    );
  });

  it("completes the run with artifact state FAILED when the run log cannot be kept", async () => {
    const run = await seedAgentRun(fx.sql);
    const pipeline = createFakePipeline(async (options) => {
      options.observer.output({ step: "agent", stream: "stdout", data: Buffer.from("hello\n") });
      return SUCCESS;
    });
    const exit = await runAgent({
      controlPlaneUrl: fx.url,
      runId: run.runId,
      attempt: 1,
      credential: run.token,
      agentVersion: "0.0.0-test",
      workDir: "/nonexistent/work",
      logger: testLogger(),
      reconnect: FAST_RECONNECT,
      pipeline,
      artifacts: artifactsFor(run.token),
    });
    assert.equal(exit.exitCode, 0, exit.message);
    assert.equal(exit.outcome?.status, "succeeded");
    assert.equal(await completionState(run.runId), "failed");
    const events = await storedEvents(fx.sql, run.runId);
    const status = events.find((e) => e.type === "run.artifact_status")?.payload.artifactStatus;
    assert.equal(status?.state, "ARTIFACT_UPLOAD_STATE_FAILED");
    assert.match(status?.message as string, /cannot write the run log's spool file: ENOENT/);
    assert.ok(events.some((e) => e.type === "run.warning" && e.payload.warning?.code === "artifact_upload_failed"));
  });

  it("a cancelled attempt gives its run log up within the cancel budget when the artifact service is down", async () => {
    const down = await startControlPlaneFixture({ CORRAL_ARTIFACT_URL: await deadUrl() });
    try {
      const run = await seedAgentRun(down.sql);
      const pipeline = createFakePipeline(async (options) => {
        options.observer.output({ step: "agent", stream: "stdout", data: Buffer.from("partial work\n") });
        return { status: "cancelled", reason: "cancelled during step \"agent\"" };
      });
      const started = performance.now();
      const exit = await runAgent({
        controlPlaneUrl: down.url,
        runId: run.runId,
        attempt: 1,
        credential: run.token,
        agentVersion: "0.0.0-test",
        workDir,
        logger: testLogger(),
        reconnect: FAST_RECONNECT,
        pipeline,
        artifacts: attemptArtifacts({ credential: run.token, flushIntervalMs: 100, uploadBudgetMs: 30_000, cancelBudgetMs: 500 }),
      });
      const tookMs = performance.now() - started;
      assert.equal(exit.exitCode, 0, exit.message);
      assert.equal(exit.outcome?.status, "cancelled");
      assert.ok(tookMs < 3000, `completed ${Math.round(tookMs)} ms after the pipeline ended, not after the 30 s upload budget`);
      const rows = await down.sql.all<{ artifact_state: string }>("select artifact_state from completions where run_id = ?", [run.runId]);
      assert.equal(rows[0]?.artifact_state, "failed");
    } finally {
      await down.close();
    }
  });
});
