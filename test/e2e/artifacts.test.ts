import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactState } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { RunStatus, type SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { outputOf, parseRunLog } from "../../agent/src/artifacts/run-log.ts";
import { createSeededRemote, useTempDirs } from "../agent/support/git-fixtures.ts";
import { storedEvents, type StoredEvent } from "../agent-session/support.ts";
import type { ArtifactServiceFixture } from "../support/artifact-service.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { waitFor } from "../support/wait-for.ts";

const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];
const CLI = fileURLToPath(new URL("../../cli/bin/corral.js", import.meta.url));
const LOG = "attempts/1/run.log";

/** The output of each step and stream as the log.chunk events carry it (`step stream` → text). */
function eventOutput(events: StoredEvent[]): Map<string, string> {
  const output = new Map<string, string>();
  for (const event of events) {
    const chunk = event.payload.logChunk;
    if (event.type !== "log.chunk" || !chunk) continue;
    const key = `${chunk.step} ${String(chunk.stream).replace("LOG_STREAM_", "").toLowerCase()}`;
    output.set(key, (output.get(key) ?? "") + Buffer.from(chunk.data as string, "base64").toString("latin1"));
  }
  return output;
}

const statuses = (events: StoredEvent[]) =>
  events.filter((e) => e.type === "run.artifact_status").map((e) => `${e.payload.artifactStatus!.name} ${String(e.payload.artifactStatus!.state).replace("ARTIFACT_UPLOAD_STATE_", "")}`);
const warnings = (events: StoredEvent[]) => events.filter((e) => e.type === "run.warning").map((e) => e.payload.warning!);

describe("artifacts of a run end to end: progressive run log, files, artifact state", function () {
  this.timeout(120_000);
  const tempDir = useTempDirs();

  async function submit(stack: StackFixture, spec: Record<string, unknown>) {
    const root = await tempDir("e2e-artifacts");
    const remote = await createSeededRemote(root);
    const { run } = await stack.client.submitRun({ spec: { repositoryUrl: remote.url, baseRef: "main", ...spec } as MessageInitShape<typeof SubmitRunRequestSchema>["spec"] });
    return run!;
  }

  const finished = (stack: StackFixture, runId: string) =>
    waitFor(async () => {
      const { run } = await stack.client.getRun({ runId });
      return run && TERMINAL.includes(run.status) ? run : undefined;
    }, `run ${runId} to end`, 60_000);

  const whole = async (artifacts: ArtifactServiceFixture, runId: string, name: string) => {
    const parts: Buffer[] = [];
    for await (const message of artifacts.client.download({ runId, name }, artifacts.auth)) parts.push(Buffer.from(message.data));
    return Buffer.concat(parts);
  };

  describe("with the artifact service up", () => {
    let stack: StackFixture;
    before(async () => {
      stack = await startStackFixture({}, { agentEnv: { CORRAL_RUN_LOG_FLUSH_INTERVAL: "500ms" } });
    });
    after(() => stack?.close());

    it("streams the run log while the run goes, stores it whole after, matching the log events; uploads glob matches and the diff", async () => {
      const artifacts = stack.artifacts!;
      const run = await submit(stack, {
        agent: {
          // Prints over several seconds, on both streams, and ends without a final newline.
          commandTemplate:
            'for i in 1 2 3 4 5 6; do echo "tick $i"; echo "warn $i" >&2; sleep 0.5; done; mkdir -p reports; echo "<testsuite tests=\\"1\\"/>" > reports/junit.xml; echo fixed > FIXED.md; printf "no newline"',
          prompt: "tick",
        },
        validationSteps: [{ name: "check", command: "cat reports/junit.xml" }],
        artifactGlobs: ["reports/*.xml", "coverage/*.lcov"],
      });

      // Follow the log from the moment the agent opens it (its upload's header makes it visible).
      await waitFor(
        () => artifacts.client.stat({ runId: run.id, name: LOG }, artifacts.auth).then(() => true, (error: unknown) => (ConnectError.from(error).code === Code.NotFound ? undefined : Promise.reject(error))),
        "the run log to appear",
      );
      const live: { text: string; runStatus: RunStatus }[] = [];
      const followed: Buffer[] = [];
      for await (const message of artifacts.client.download({ runId: run.id, name: LOG, follow: true }, artifacts.auth)) {
        followed.push(Buffer.from(message.data));
        if (message.data.length > 0) live.push({ text: Buffer.from(message.data).toString(), runStatus: (await stack.client.getRun({ runId: run.id })).run!.status });
      }
      const tailed = live.filter((piece) => piece.text.includes("tick") && !TERMINAL.includes(piece.runStatus));
      assert.ok(tailed.length >= 2, `lines arrived in several pieces while the run was going (${live.length} pieces, ${tailed.length} with ticks during the run)`);
      assert.ok(live.findIndex((p) => p.text.includes("tick 1")) < live.findIndex((p) => p.text.includes("tick 6")), "tick 1 arrived before tick 6 was printed");

      const ended = await finished(stack, run.id);
      assert.equal(ended.status, RunStatus.COMPLETED, ended.reason);
      assert.equal(ended.artifactState, ArtifactState.COMPLETE);

      // Whole after the run: the same bytes the follower got, verified by the service.
      const log = await whole(artifacts, run.id, LOG);
      assert.ok(log.equals(Buffer.concat(followed)), "the follower saw the whole log");
      const { artifact } = await artifacts.client.stat({ runId: run.id, name: LOG }, artifacts.auth);
      assert.ok(artifact?.complete);

      // The single source of truth: the run log and the log events carry the same output.
      const lines = parseRunLog(log);
      assert.ok(lines.every((line) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(line.time)), "every line is time-stamped");
      const fromLog = new Map([...outputOf(lines)].map(([key, bytes]) => [key, bytes.toString("latin1")]));
      const events = await storedEvents(stack.sql, run.id);
      assert.deepEqual(fromLog, eventOutput(events));
      assert.match(fromLog.get("agent stdout")!, /^tick 1\ntick 2\n(.|\n)*tick 6\nno newline$/);
      assert.match(fromLog.get("agent stderr")!, /^warn 1\n/);
      assert.equal(fromLog.get("check stdout"), '<testsuite tests="1"/>\n');
      assert.ok(lines.some((line) => line.step === "agent" && !line.newline && line.text.toString() === "no newline"), "the missing final newline is kept");

      // Files and diff, each with its status events; the glob that matched nothing is a warning.
      assert.deepEqual(statuses(events), [
        `${LOG} UPLOADING`,
        `${LOG} UPLOADED`,
        "attempts/1/files/reports/junit.xml UPLOADING",
        "attempts/1/files/reports/junit.xml UPLOADED",
        "attempts/1/change.diff UPLOADING",
        "attempts/1/change.diff UPLOADED",
      ]);
      const uploaded = events.filter((e) => e.payload.artifactStatus?.state === "ARTIFACT_UPLOAD_STATE_UPLOADED").map((e) => e.payload.artifactStatus!);
      assert.ok(uploaded.every((s) => /^[0-9a-f]{64}$/.test(s.sha256 as string) && Number(s.sizeBytes) > 0), "uploaded artifacts report their digest and size");
      assert.deepEqual(warnings(events).map((w) => w.code), ["artifact_glob_matched_nothing"]);
      assert.match(warnings(events)[0]!.message as string, /coverage\/\*\.lcov/);
      assert.equal((await whole(artifacts, run.id, "attempts/1/files/reports/junit.xml")).toString(), '<testsuite tests="1"/>\n');
      const diff = (await whole(artifacts, run.id, "attempts/1/change.diff")).toString();
      assert.match(diff, /diff --git a\/FIXED\.md b\/FIXED\.md\nnew file mode[^\n]*\n(.|\n)*\+fixed\n/);
      assert.match(diff, /reports\/junit\.xml/);

      // The finalization recorded the state; `corral get --json` shows it.
      const rows = await stack.sql.all<{ artifact_state: string }>("select artifact_state from runs where id = ?", [run.id]);
      assert.equal(rows[0]?.artifact_state, "complete");
      const { stdout } = await promisify(execFile)(process.execPath, [CLI, "get", run.id, "--json"], { env: { ...process.env, CORRAL_SCHEDULER_URL: stack.scheduler.server.url } });
      assert.equal((JSON.parse(stdout) as { artifactState?: string }).artifactState, "ARTIFACT_STATE_COMPLETE");
    });

    it("finishes the log so far when the run is cancelled, within the grace", async () => {
      const artifacts = stack.artifacts!;
      const run = await submit(stack, { agent: { commandTemplate: 'echo "before the cancel"; sleep 60', prompt: "wait" }, artifactGlobs: ["**/*"] });
      await waitFor(async () => ((await stack.client.getRun({ runId: run.id })).run?.currentStep === "agent" ? true : undefined), "the agent step");
      await waitFor(async () => {
        const stat = await artifacts.client.stat({ runId: run.id, name: LOG }, artifacts.auth).catch(() => undefined);
        return stat && stat.artifact!.size > 0n ? true : undefined;
      }, "the first line to be sent");
      const cancelled = performance.now();
      await stack.client.cancelRun({ runId: run.id, reason: "enough" });
      const ended = await finished(stack, run.id);
      assert.equal(ended.status, RunStatus.CANCELLED);
      assert.ok(performance.now() - cancelled < 10_000, "ended within the grace and the escalation slack");
      assert.equal(ended.artifactState, ArtifactState.COMPLETE, "the log, the only artifact of a cancelled attempt, is stored");
      const { artifact } = await artifacts.client.stat({ runId: run.id, name: LOG }, artifacts.auth);
      assert.ok(artifact?.complete, "the run log is finished");
      const log = (await whole(artifacts, run.id, LOG)).toString();
      assert.match(log, / agent stdout \| before the cancel\n/);
      const events = await storedEvents(stack.sql, run.id);
      assert.deepEqual(statuses(events), [`${LOG} UPLOADING`, `${LOG} UPLOADED`], "no files for a cancelled attempt");
    });
  });

  describe("with the artifact service down", () => {
    let stack: StackFixture;
    before(async () => {
      stack = await startStackFixture({}, { artifacts: "down", agentEnv: { CORRAL_ARTIFACT_UPLOAD_BUDGET: "2s", CORRAL_RUN_LOG_FLUSH_INTERVAL: "200ms" } });
    });
    after(() => stack?.close());

    it("completes the run anyway, with artifact state FAILED and a warning", async () => {
      const run = await submit(stack, { agent: { commandTemplate: "echo changed > CHANGED.md", prompt: "change" }, artifactGlobs: ["*.md"] });
      const ended = await finished(stack, run.id);
      assert.equal(ended.status, RunStatus.COMPLETED, ended.reason);
      assert.equal(ended.artifactState, ArtifactState.FAILED);
      const events = await storedEvents(stack.sql, run.id);
      assert.ok(statuses(events).includes(`${LOG} FAILED`), statuses(events).join(", "));
      assert.ok(statuses(events).includes("attempts/1/files/CHANGED.md FAILED"), statuses(events).join(", "));
      const warning = warnings(events).find((w) => w.code === "artifact_upload_failed");
      assert.ok(warning, "a warning says the artifacts were not stored");
      assert.match(warning.message as string, /of \d+ artifacts were not stored: attempts\/1\/run\.log \(not stored within \d+ ms; last error: Unavailable/);
      const rows = await stack.sql.all<{ artifact_state: string }>("select artifact_state from runs where id = ?", [run.id]);
      assert.equal(rows[0]?.artifact_state, "failed");
    });
  });
});
