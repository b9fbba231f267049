import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { openAttach } from "../support/attach-client.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";

describe("control plane: the hello deadline (CORRAL_HELLO_TIMEOUT)", () => {
  let fx: ControlPlaneFixture;
  before(async () => {
    fx = await startControlPlaneFixture({ CORRAL_HELLO_TIMEOUT: "300ms" });
  });
  after(() => fx.close());

  it("ends a stream that says nothing with DEADLINE_EXCEEDED", async () => {
    const stream = openAttach(fx.url);
    const started = performance.now();
    const error = await stream.ended();
    assert.equal(error?.code, Code.DeadlineExceeded, error?.message);
    assert.match(error!.rawMessage, /no hello within the deadline/);
    assert.ok(performance.now() - started >= 250, "not before the deadline");
  });

  it("does not time out a hello that arrived and is slow to look up (a burst of attaches)", async () => {
    const run = await seedLaunchedRun(fx.sql);
    // Another transaction holds the attempt's row, so taking the lease waits well past the deadline.
    const holder = new pg.Client({ connectionString: fx.database.url });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query("select 1 from attempts where run_id = $1 for update", [run.runId]);
      const stream = openAttach(fx.url);
      stream.hello(run.runId, 1, run.token);
      await new Promise((resolve) => setTimeout(resolve, 900));
      await holder.query("commit");
      const welcome = await stream.next("welcome");
      assert.equal(welcome.leaseEpoch, 1n);
      stream.abort();
    } finally {
      await holder.end();
    }
  });
});
