import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";

const MINIMAL_AGENT = fileURLToPath(new URL("../support/minimal-agent.ts", import.meta.url));

describe("an agent with only the oldest protocol version and no optional capabilities", function () {
  this.timeout(60_000);
  let stack: StackFixture;
  before(async () => {
    stack = await startStackFixture({ CORRAL_AGENT_COMMAND: `${process.execPath} ${MINIMAL_AGENT}` });
  });
  after(() => stack.close());

  it("still completes a run", async () => {
    const { run } = await stack.client.submitRun({
      spec: { repositoryUrl: "file:///nowhere.git", baseRef: "main", agent: { commandTemplate: "true", prompt: "nothing" } },
    });
    let final = run!;
    for await (const message of stack.client.watchRun({ runId: run!.id })) if (message.update.case === "run") final = message.update.value;
    assert.equal(final.status, RunStatus.COMPLETED, final.reason);
    assert.equal(final.result?.branch, "minimal");
  });
});
