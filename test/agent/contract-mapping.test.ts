import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { StepOutcome } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { pipelineSpecFromRunSpec, STEP_OUTCOME_TO_PROTO } from "../../agent/src/pipeline/contract-mapping.ts";

const timeouts = { step: durationFromMs(600_000), clone: durationFromMs(120_000), grace: durationFromMs(10_500) };

describe("pipeline spec from the contract's RunSpec", () => {
  it("converts durations to ms and applies the defaults the proto defines in terms of other fields", () => {
    const spec = pipelineSpecFromRunSpec(create(RunSpecSchema, {
      repositoryUrl: "https://git.example.com/acme/app.git",
      baseRef: "v1.2.0",
      agent: { commandTemplate: "goose run --instructions {prompt_file}", prompt: "\n  Fix the flaky test\nin ci.yml" },
      validationSteps: [{ name: "test", command: "npm test", timeout: durationFromMs(90_000) }, { name: "lint", command: "npm run lint" }],
      timeouts,
      commit: { authorName: "Corral", authorEmail: "corral@example.com" },
      env: { CI: "1" },
    }), "6f1c");
    assert.deepEqual(spec, {
      repositoryUrl: "https://git.example.com/acme/app.git",
      baseRef: "v1.2.0",
      branch: "corral/6f1c",
      agent: { commandTemplate: "goose run --instructions {prompt_file}", prompt: "\n  Fix the flaky test\nin ci.yml" },
      validationSteps: [{ name: "test", command: "npm test", timeoutMs: 90_000 }, { name: "lint", command: "npm run lint", timeoutMs: 600_000 }],
      timeouts: { stepMs: 600_000, cloneMs: 120_000, graceMs: 10_500 },
      commit: { authorName: "Corral", authorEmail: "corral@example.com", message: "Fix the flaky test" },
      env: { CI: "1" },
    });
  });

  it("keeps an explicit branch and message, and refuses a spec without budgets", () => {
    const spec = pipelineSpecFromRunSpec(create(RunSpecSchema, { branch: "fix/it", commit: { message: "Explicit" }, timeouts }), "r");
    assert.equal(spec.branch, "fix/it");
    assert.equal(spec.commit.message, "Explicit");
    assert.throws(() => pipelineSpecFromRunSpec(create(RunSpecSchema, { timeouts: { step: timeouts.step, clone: timeouts.clone } }), "r"), /timeouts\.grace/);
  });

  it("maps step outcomes onto the contract's enum", () => {
    assert.equal(STEP_OUTCOME_TO_PROTO.timed_out, StepOutcome.TIMED_OUT);
    assert.equal(STEP_OUTCOME_TO_PROTO.skipped, StepOutcome.SKIPPED);
  });
});
