import assert from "node:assert/strict";
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { sandboxFact } from "@corral/scheduler/runtime/kubernetes/sandbox-facts.ts";

const job = (conditions: { type: string; status: string; reason?: string; message?: string }[] = []): V1Job => ({ status: { conditions } }) as V1Job;
const pod = (status: V1Pod["status"]): V1Pod => ({ metadata: { name: "p" }, status });

describe("kubernetes sandbox facts", () => {
  it("a missing Job is missing", () => {
    assert.equal(sandboxFact(undefined, []).fact, "missing");
  });

  it("Job conditions decide success and failure; a False condition decides nothing", () => {
    assert.equal(sandboxFact(job([{ type: "Complete", status: "True" }]), []).fact, "succeeded");
    assert.equal(sandboxFact(job([{ type: "Complete", status: "False" }]), []).fact, "running");
    const failed = sandboxFact(job([{ type: "Failed", status: "True", reason: "DeadlineExceeded", message: "Job was active longer than specified deadline" }]), [
      pod({ containerStatuses: [{ name: "agent", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 137, reason: "Error" } } }] }),
    ]);
    assert.equal(failed.fact, "failed");
    assert.match(failed.detail, /DeadlineExceeded/);
    assert.match(failed.detail, /exited with code 137/);
  });

  for (const reason of ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"]) {
    it(`a container waiting with ${reason} fails at once, and never started`, () => {
      const observed = sandboxFact(job(), [
        pod({ phase: "Pending", containerStatuses: [{ name: "agent", image: "i", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason, message: "no such image" } } }] }),
      ]);
      assert.equal(observed.fact, "failed");
      assert.equal(observed.neverStarted, true);
      assert.match(observed.detail, new RegExp(`container agent cannot start: ${reason}: no such image`));
    });
  }

  it("ordinary waiting (ContainerCreating) and an unschedulable pod are still running, the latter explained", () => {
    const creating = pod({ containerStatuses: [{ name: "agent", image: "i", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason: "ContainerCreating" } } }] });
    assert.deepEqual(sandboxFact(job(), [creating]), { fact: "running", detail: "" });
    const unschedulable = pod({ conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes have enough memory" }] });
    const observed = sandboxFact(job(), [unschedulable]);
    assert.equal(observed.fact, "running");
    assert.match(observed.detail, /unschedulable: 0\/3 nodes/);
  });
});
