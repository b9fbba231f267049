import assert from "node:assert/strict";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RunService, RunStatus, type SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createSeededRemote, useTempDirs } from "../agent/support/git-fixtures.ts";
import type { Scheduler } from "@corral/scheduler/start-scheduler.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { waitFor } from "../support/wait-for.ts";

const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

/**
 * Several scheduler replicas on one database: admission never launches a run twice nor
 * exceeds the limits together, exactly one replica reconciles, and when it goes another
 * takes over the runs in flight.
 */
describe("scheduler replicas", function () {
  this.timeout(180_000);
  let stack: StackFixture;
  let replicas: Scheduler[] = [];
  const tempDir = useTempDirs();
  before(async () => {
    stack = await startStackFixture({ CORRAL_MAX_CONCURRENT_RUNS: "4", CORRAL_LOCAL_WARM_AGENTS: "0" });
  });
  after(() => stack?.close());

  it("three replicas admit 24 runs: each launched once, never more than the limit at a time", async () => {
    replicas = [stack.scheduler, await stack.startSchedulerReplica(), await stack.startSchedulerReplica()];
    const clients = replicas.map((r) => createClient(RunService, createGrpcTransport({ baseUrl: r.server.url })));
    const remote = await createSeededRemote(await tempDir("replicas"));
    // What admission promises, as a reader of the database sees it while the runs go.
    let sampling = true;
    const peakActive = (async () => {
      let peak = 0;
      while (sampling) {
        const row = await stack.sql.one<{ n: string }>("select count(*) as n from runs where status in ('launching', 'running', 'cancelling')");
        peak = Math.max(peak, Number(row!.n));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return peak;
    })();
    const spec = { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: "sleep 0.3; echo x > X.md", prompt: "p" } };
    // Submitted through every replica, so that each one's dispatcher competes.
    const ids = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => (await clients[i % 3]!.submitRun({ spec: spec as MessageInitShape<typeof SubmitRunRequestSchema>["spec"] })).run!.id),
    );
    for (const runId of ids) {
      const run = await waitFor(async () => {
        const { run } = await clients[0]!.getRun({ runId });
        return run && TERMINAL.includes(run.status) ? run : undefined;
      }, `run ${runId}`);
      assert.equal(run.status, RunStatus.COMPLETED, run.reason);
    }
    const attempts = await stack.sql.all<{ run_id: string; n: string }>("select run_id, count(*) as n from attempts group by run_id");
    assert.equal(attempts.length, 24);
    assert.deepEqual(attempts.filter((a) => Number(a.n) !== 1), [], "a run was launched more than once");
    sampling = false;
    const peak = await peakActive;
    assert.ok(peak <= 4, `${peak} runs were active at once; the limit is 4`);
    assert.ok(peak >= 2, `only ${peak} run was ever active: the replicas did not run concurrently`);
  });

  it("one replica reconciles; when it stops, another takes over the runs in flight", async () => {
    if (replicas.length < 2) replicas = [stack.scheduler, await stack.startSchedulerReplica()];
    const leaders = (among: Scheduler[]) => among.filter((s) => s.isReconcilerLeader());
    await waitFor(async () => (leaders(replicas).length === 1 ? true : undefined), "one leader");
    const remote = await createSeededRemote(await tempDir("takeover"));
    const { run } = await stack.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: "sleep 2; echo y > Y.md", prompt: "p" } } as MessageInitShape<typeof SubmitRunRequestSchema>["spec"],
    });
    await waitFor(async () => ((await stack.client.getRun({ runId: run!.id })).run?.currentStep === "agent" ? true : undefined), "the agent step");
    // The leader goes; its agent keeps running; another replica must finalize the run.
    const leader = leaders(replicas)[0]!;
    const others = replicas.filter((r) => r !== leader);
    await leader.close(100);
    const other = await waitFor(async () => (leaders(others).length === 1 ? leaders(others)[0] : undefined), "another replica to lead", 15_000);
    const client = createClient(RunService, createGrpcTransport({ baseUrl: other.server.url }));
    const finished = await waitFor(async () => {
      const { run: now } = await client.getRun({ runId: run!.id });
      return now && TERMINAL.includes(now.status) ? now : undefined;
    }, "the run to finish under the new leader");
    assert.equal(finished.status, RunStatus.COMPLETED, finished.reason);
    // The stack closes its first scheduler at the end; give it a live one again.
    if (leader === stack.scheduler) await stack.restartScheduler();
  });
});
