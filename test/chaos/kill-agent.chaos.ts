import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createSeededRemote } from "../agent/support/git-fixtures.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { settle, statusName, waitFor } from "./support/chaos-stack.ts";

const LEASE_MS = 3000;

/**
 * R2: the agent process is killed with SIGKILL mid-step. The run must be failed with a reason
 * within the lease: while a scheduler watches the process (the runtime sees it die), and when
 * it dies while no scheduler runs (the next one finds the process gone when it reconciles).
 */
describe("chaos R2: kill -9 the agent", function () {
  this.timeout(120_000);
  let stack: StackFixture;
  let dir: string;
  before(async () => {
    stack = await startStackFixture({ CORRAL_LEASE_DURATION: `${LEASE_MS}ms` });
    dir = await mkdtemp(join(tmpdir(), "corral-r2-"));
  });
  after(async () => {
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function agentInStep(): Promise<{ runId: string; pid: number }> {
    const remote = await createSeededRemote(await mkdtemp(join(dir, "remote-")));
    const { run } = await stack.client.submitRun({ spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: "sleep 600", prompt: "wait" } } });
    await waitFor(async () => ((await stack.client.getRun({ runId: run!.id })).run?.currentStep === "agent" ? true : undefined), "the agent step");
    const attempt = await stack.sql.one<{ runtime_handle: { pid: number } }>("select runtime_handle from attempts where run_id = ?", [run!.id]);
    return { runId: run!.id, pid: attempt!.runtime_handle.pid };
  }

  it("fails the run with a reason within the lease, while the scheduler watches the process", async () => {
    const { runId, pid } = await agentInStep();
    const killed = performance.now();
    process.kill(-pid, "SIGKILL");
    const run = await settle(stack.client, runId, 30_000);
    const ms = performance.now() - killed;
    console.log(`      R2: agent killed → run ${statusName(run.status)} in ${Math.round(ms)} ms (lease ${LEASE_MS} ms): "${run.reason}"`);
    assert.equal(run.status, RunStatus.FAILED);
    assert.match(run.reason, /killed by SIGKILL|no completion|lease/);
    assert.ok(ms < LEASE_MS, `within the lease (${Math.round(ms)} ms)`);
  });

  it("fails the run with a reason when the agent dies while no scheduler runs, once one is back", async () => {
    const { runId, pid } = await agentInStep();
    await stack.scheduler.close(100);
    const killed = performance.now();
    process.kill(-pid, "SIGKILL");
    await stack.restartScheduler();
    const run = await settle(stack.client, runId, 30_000);
    const ms = performance.now() - killed;
    console.log(`      R2: agent killed while no scheduler ran → run ${statusName(run.status)} in ${Math.round(ms)} ms (lease ${LEASE_MS} ms): "${run.reason}"`);
    assert.equal(run.status, RunStatus.FAILED);
    assert.ok(run.reason.length > 0, "a reason");
    assert.ok(ms < LEASE_MS, `within the lease (${Math.round(ms)} ms)`);
  });
});
