import assert from "node:assert/strict";
import { Phase } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { RunStatus, type Run, type SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { createSeededRemote, git, remoteBranch, useTempDirs } from "../agent/support/git-fixtures.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { waitFor } from "../support/wait-for.ts";

const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

describe("a run end to end on the local runtime", function () {
  this.timeout(90_000);
  let stack: StackFixture;
  const tempDir = useTempDirs();
  before(async () => {
    stack = await startStackFixture();
  });
  after(() => stack.close());

  /** Follows WatchRun to the end, collecting event types, as a client would. */
  async function watchToEnd(runId: string): Promise<{ run: Run; types: string[]; sequences: Map<number, bigint[]>; logs: string }> {
    let run: Run | undefined;
    const types: string[] = [];
    const sequences = new Map<number, bigint[]>();
    let logs = "";
    for await (const message of stack.client.watchRun({ runId })) {
      if (message.update.case === "run") run = message.update.value;
      else if (message.update.case === "event") {
        const { attempt, event } = message.update.value;
        types.push(event!.payload.case!);
        sequences.set(attempt, [...(sequences.get(attempt) ?? []), event!.sequence]);
        if (event!.payload.case === "logChunk") logs += new TextDecoder().decode(event!.payload.value.data);
      }
    }
    assert.ok(run && TERMINAL.includes(run.status), "WatchRun ends only when the run is terminal");
    return { run: run!, types, sequences, logs };
  }

  /** Submits a run against a fresh seeded bare remote. */
  async function submit(spec: Record<string, unknown>) {
    const root = await tempDir("e2e");
    const remote = await createSeededRemote(root);
    const { run } = await stack.client.submitRun({ spec: { repositoryUrl: remote.url, baseRef: "main", ...spec } as MessageInitShape<typeof SubmitRunRequestSchema>["spec"] });
    return { root, remote, run };
  }

  const inStep = (runId: string, step: string) =>
    waitFor(async () => ((await stack.client.getRun({ runId })).run?.currentStep === step ? true : undefined), `step ${step}`);

  it("pushes the branch with the agent's commit when every step succeeds", async () => {
    const { root, remote, run } = await submit({
      agent: { commandTemplate: "cat {prompt_file} >> NOTES.md && echo 'agent did its work'", prompt: "Write the notes" },
      validationSteps: [{ name: "notes-exist", command: "grep -q 'Write the notes' NOTES.md" }],
      commit: { message: "Add notes" },
    });
    const watched = await watchToEnd(run!.id);
    assert.equal(watched.run.status, RunStatus.COMPLETED, watched.run.reason);
    const result = watched.run.result!;
    assert.equal(result.branch, `corral/${run!.id}`);
    assert.deepEqual(result.changedFiles, ["NOTES.md"]);
    assert.equal(remoteBranch(root, remote.bare, result.branch), result.commitSha, "the pushed branch points at the reported commit");
    assert.equal(git(root, ["--git-dir", remote.bare, "log", "-1", "--format=%s|%P", result.commitSha]).trim(), `Add notes|${remote.second}`);
    for (const type of ["runStarted", "phaseChanged", "stepStarted", "stepFinished", "logChunk", "completionAttempted"]) {
      assert.ok(watched.types.includes(type), `no ${type} event in ${[...new Set(watched.types)]}`);
    }
    assert.match(watched.logs, /agent did its work/);
    const sequences = watched.sequences.get(1)!;
    assert.deepEqual(sequences, sequences.map((_, i) => BigInt(i + 1)), "events arrive once each, in order, without gaps");
    assert.notEqual(watched.run.phase, Phase.UNSPECIFIED, "the run shows the last phase the agent reported");
  });

  it("fails when a validation step fails, and pushes nothing", async () => {
    const { root, remote, run } = await submit({
      agent: { commandTemplate: "echo change >> README.md", prompt: "change it" },
      validationSteps: [{ name: "tests", command: "echo '2 tests failed' >&2; exit 3" }],
    });
    const watched = await watchToEnd(run!.id);
    assert.equal(watched.run.status, RunStatus.FAILED);
    assert.match(watched.run.reason, /tests/);
    assert.match(watched.logs, /2 tests failed/);
    assert.equal(remoteBranch(root, remote.bare, `corral/${run!.id}`), undefined);
  });

  it("fails a step that runs past its timeout", async () => {
    const { root, remote, run } = await submit({
      agent: { commandTemplate: "sleep 30", prompt: "take forever" },
      timeouts: { step: durationFromMs(1000), grace: durationFromMs(500) },
    });
    const watched = await watchToEnd(run!.id);
    assert.equal(watched.run.status, RunStatus.FAILED);
    assert.match(watched.run.reason, /time/i);
  });

  it("cancels a run during a step promptly", async () => {
    const { run } = await submit({ agent: { commandTemplate: "sleep 60", prompt: "wait" } });
    await inStep(run!.id, "agent");
    const asked = Date.now();
    const watching = watchToEnd(run!.id);
    await stack.client.cancelRun({ runId: run!.id, reason: "no longer needed" });
    const watched = await watching;
    assert.equal(watched.run.status, RunStatus.CANCELLED, watched.run.reason);
    assert.ok(watched.types.includes("cancellationObserved"), "the agent reports that it saw the cancel");
    assert.ok(Date.now() - asked < 15_000, "cancelled within seconds");
    assert.equal(watched.run.cancelReason, "no longer needed");
  });

  it("fails a run whose agent is killed, with a reason, within the lease", async () => {
    const { run } = await submit({ agent: { commandTemplate: "sleep 60", prompt: "wait" } });
    await inStep(run!.id, "agent");
    const attempt = await stack.sql.one<{ runtime_handle: { pid: number } }>("select runtime_handle from attempts where run_id = ?", [run!.id]);
    const killed = Date.now();
    process.kill(-attempt!.runtime_handle.pid, "SIGKILL");
    const watched = await watchToEnd(run!.id);
    assert.equal(watched.run.status, RunStatus.FAILED);
    assert.match(watched.run.reason, /killed by SIGKILL|no completion/);
    assert.ok(Date.now() - killed < 3000 + 5000, "finalized within the lease (3s) plus the sweep");
  });

  it("survives a control-plane restart mid-run: the agent reconnects and nothing is lost or duplicated", async () => {
    const { root, remote, run } = await submit({
      agent: { commandTemplate: "for i in $(seq 1 40); do echo line $i; sleep 0.1; done; echo done >> README.md", prompt: "talk" },
    });
    await inStep(run!.id, "agent");
    await stack.restartControlPlane();
    const watched = await watchToEnd(run!.id);
    assert.equal(watched.run.status, RunStatus.COMPLETED, watched.run.reason);
    const sequences = watched.sequences.get(1)!;
    assert.deepEqual(sequences, sequences.map((_, i) => BigInt(i + 1)));
    for (let i = 1; i <= 40; i++) assert.match(watched.logs, new RegExp(`line ${i}\\n`));
  });
});

describe("a scheduler restarted while its runs are in flight", function () {
  this.timeout(90_000);
  const tempDir = useTempDirs();

  it("picks the runs up again: a successful agent still completes its run, a cancel still lands", async () => {
    const stack = await startStackFixture();
    try {
      const root = await tempDir("restart");
      const remote = await createSeededRemote(root);
      const slow = await stack.client.submitRun({
        spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: "sleep 3; echo later >> README.md", prompt: "slow" } },
      });
      const forever = await stack.client.submitRun({
        spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: "sleep 600", prompt: "forever" } },
      });
      for (const run of [slow.run!, forever.run!]) {
        const deadline = Date.now() + 30_000;
        while ((await stack.client.getRun({ runId: run.id })).run?.currentStep !== "agent") {
          assert.ok(Date.now() < deadline, "the agent step should start");
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      await stack.restartScheduler();
      await stack.client.cancelRun({ runId: forever.run!.id, reason: "after restart" });
      const settle = async (runId: string) => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const run = (await stack.client.getRun({ runId })).run!;
          if (TERMINAL.includes(run.status)) return run;
          assert.ok(Date.now() < deadline, `run ${runId} did not finish`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      };
      const completed = await settle(slow.run!.id);
      assert.equal(completed.status, RunStatus.COMPLETED, completed.reason);
      assert.equal(remoteBranch(root, remote.bare, completed.result!.branch), completed.result!.commitSha);
      const cancelled = await settle(forever.run!.id);
      assert.equal(cancelled.status, RunStatus.CANCELLED, cancelled.reason);
    } finally {
      await stack.close();
    }
  });
});
