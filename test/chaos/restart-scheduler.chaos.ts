import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createSeededRemote } from "../agent/support/git-fixtures.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { settle, statusName, waitFor } from "./support/chaos-stack.ts";

const RUNS = 100;

/**
 * R3: the scheduler is restarted while 100 runs are in flight (queued, launching, running and
 * finishing, real agent processes). None may be lost or stuck: every run reaches a terminal
 * state, and with nothing wrong with them, completed — each launched once.
 */
describe("chaos R3: restart the scheduler with 100 runs in flight", function () {
  this.timeout(600_000);
  let stack: StackFixture;
  let dir: string;
  before(async () => {
    stack = await startStackFixture({ CORRAL_MAX_CONCURRENT_RUNS: String(RUNS), CORRAL_MAX_RUNS_PER_REPOSITORY: String(RUNS), CORRAL_LEASE_DURATION: "30s" });
    dir = await mkdtemp(join(tmpdir(), "corral-r3-"));
  });
  after(async () => {
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("brings every run to completion, each launched once", async () => {
    const remote = await createSeededRemote(dir);
    const ids: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      const { run } = await stack.client.submitRun({
        spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: `sleep 2; echo ${i} >> README.md`, prompt: `run ${i}` } },
      });
      ids.push(run!.id);
    }
    const states = async () =>
      new Map(
        (await stack.sql.all<{ status: string; n: string }>("select status, count(*) as n from runs group by status order by status")).map((r) => [r.status, Number(r.n)]),
      );
    // Restart with runs in every stage: some finished, some running, some not yet started.
    await waitFor(async () => ((await states()).get("completed") ?? 0) >= 5 ? true : undefined, "the first runs completed", 300_000);
    const atRestart = await states();
    const restarted = performance.now();
    await stack.restartScheduler();
    const finished = await Promise.all(ids.map((id) => settle(stack.client, id, 400_000)));
    const seconds = (performance.now() - restarted) / 1000;
    const byStatus = new Map<string, number>();
    for (const run of finished) byStatus.set(statusName(run.status), (byStatus.get(statusName(run.status)) ?? 0) + 1);
    const attempts = await stack.sql.one<{ runs: string; attempts: string; launched: string }>(
      "select count(distinct run_id) as runs, count(*) as attempts, count(launched_at) as launched from attempts",
    );
    console.log(
      `      R3: at the restart ${JSON.stringify(Object.fromEntries(atRestart))}; ${seconds.toFixed(1)} s later all ${RUNS} terminal: ` +
        `${JSON.stringify(Object.fromEntries(byStatus))}; ${attempts!.attempts} attempts for ${attempts!.runs} runs`,
    );
    const notCompleted = finished.filter((run) => run.status !== RunStatus.COMPLETED);
    assert.deepEqual(notCompleted.map((run) => `${run.id}: ${statusName(run.status)} ${run.reason}`), [], "every run completed");
    assert.equal(Number(attempts!.attempts), RUNS, "one attempt per run: nothing launched twice");
    assert.equal(Number(attempts!.launched), RUNS);
  });
});
