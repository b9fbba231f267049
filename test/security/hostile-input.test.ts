import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { CompletionStatus } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { openAttach } from "../support/attach-client.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { startSchedulerFixture, type SchedulerFixture } from "../support/scheduler.ts";

/** The fields an INVALID_ARGUMENT names; fails on any other outcome. */
function violatedFields(error: unknown): string[] {
  assert.ok(error instanceof ConnectError, `expected a refusal, got ${String(error)}`);
  assert.equal(error.code, Code.InvalidArgument, error.message);
  return error.findDetails(FieldViolationsSchema).flatMap((d) => d.violations.map((v) => v.field));
}

/** Regressions the fuzz suites (test/fuzz) found: each was answered INTERNAL before. */
describe("hostile input the fuzzers found", function () {
  this.timeout(60_000);
  let cp: ControlPlaneFixture;
  let scheduler: SchedulerFixture;
  before(async () => {
    cp = await startControlPlaneFixture();
    scheduler = await startSchedulerFixture({ CORRAL_MAX_CONCURRENT_RUNS: "0", CORRAL_LOCAL_WARM_AGENTS: "0" }, cp.database);
  });
  after(async () => {
    await scheduler?.close();
    await cp?.close();
  });

  it("a completion with a NUL character names the field, and the stream can complete properly afterwards", async () => {
    const run = await seedLaunchedRun(cp.sql);
    const agent = openAttach(cp.url);
    agent.hello(run.runId, 1, run.token);
    await agent.next("welcome");
    agent.send({ case: "complete", value: { idempotencyKey: "k\0", status: CompletionStatus.FAILED, result: { branch: "a\0b", changedFiles: ["ok", "x\0"] } } });
    assert.deepEqual(violatedFields(await agent.ended()), ["complete.idempotency_key", "complete.result.branch", "complete.result.changed_files[1]"]);
    const again = openAttach(cp.url);
    again.hello(run.runId, 1, run.token);
    await again.next("welcome");
    again.send({ case: "complete", value: { idempotencyKey: "k", status: CompletionStatus.FAILED, reason: "fine" } });
    await again.next("completionAck");
    again.close();
    assert.equal(await again.ended(), null);
  });

  it("ListRuns with a NUL in repository_url, and WatchRun after a sequence beyond bigint, name the field", async () => {
    const listed = await scheduler.client.listRuns({ repositoryUrl: "https://example.invalid/a\0b.git" }).then(() => undefined, (e: unknown) => e);
    assert.deepEqual(violatedFields(listed), ["repository_url"]);
    const run = await seedLaunchedRun(cp.sql);
    const watched = await (async () => {
      for await (const _ of scheduler.client.watchRun({ runId: run.runId, afterSequence: 2n ** 63n })) return undefined;
    })().then(() => undefined, (e: unknown) => e);
    assert.deepEqual(violatedFields(watched), ["after_sequence"]);
  });

  it("a malformed run id is not echoed: it may be a credential pasted by mistake", async () => {
    const run = await seedLaunchedRun(cp.sql);
    const error = await scheduler.client.getRun({ runId: run.token }).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof ConnectError && error.code === Code.NotFound);
    assert.ok(!error.rawMessage.includes(run.token), error.rawMessage);
  });
});
