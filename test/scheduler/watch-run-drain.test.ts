import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { startSchedulerFixture } from "../support/scheduler.ts";

describe("WatchRun while the scheduler drains", function () {
  this.timeout(60_000);

  it("ends UNAVAILABLE, not as if the run had ended, so watchers resume", async () => {
    // Dispatch paused: the run stays queued, and its watch stays open.
    const fixture = await startSchedulerFixture({ CORRAL_MAX_CONCURRENT_RUNS: "0" });
    let closed = false;
    try {
      const { run } = await fixture.client.submitRun({ spec: { repositoryUrl: "file:///srv/git/app.git", baseRef: "main", agent: { commandTemplate: "true", prompt: "wait" } } });
      const stream = fixture.client.watchRun({ runId: run!.id })[Symbol.asyncIterator]();
      const first = await stream.next();
      assert.equal(first.value?.update.case, "run");
      assert.equal((first.value?.update.value as { status: RunStatus }).status, RunStatus.QUEUED);
      const started = Date.now();
      const closing = fixture.close();
      closed = true;
      await assert.rejects(stream.next(), (error: unknown) => ConnectError.from(error).code === Code.Unavailable);
      // At once: not when the drain's grace (1 s here) runs out and the stream is reset.
      assert.ok(Date.now() - started < 800, `the stream ended ${Date.now() - started} ms into the drain`);
      await closing;
    } finally {
      if (!closed) await fixture.close();
    }
  });
});
