import assert from "node:assert/strict";
import {
  decideFinalStatus,
  type FinalizationEvidence,
} from "@corral/scheduler/finalization/decide-final-status.ts";
import { completionKinds, finalizationTable, rowCombinations, runtimeFacts, tableStatus, terminalFacts } from "./finalization-table.ts";

const booleans = [false, true];

/** Every input the function can get: 2 × 4 × 5 × 2 × 2 = 160 combinations. */
function everyEvidence(): FinalizationEvidence[] {
  return booleans.flatMap((cancelAccepted) =>
    completionKinds.flatMap((completion) =>
      runtimeFacts.flatMap((runtimeFact) =>
        booleans.flatMap((waitWindowElapsed) =>
          booleans.map((escalationExhausted) => ({ cancelAccepted, completion, runtimeFact, waitWindowElapsed, escalationExhausted })),
        ),
      ),
    ),
  );
}

describe("decideFinalStatus", () => {
  describe("the finalization table, row by row", () => {
    for (const row of finalizationTable) {
      it(`${row.contract ? "row" : "silent case:"} ${row.name} → ${row.final}`, () => {
        for (const { completion, fact } of rowCombinations(row)) {
          // The wait window matters only without a completion; every setting must agree.
          for (const waitWindowElapsed of completion === "none" && !row.cancelAccepted ? [true] : booleans) {
            for (const escalationExhausted of booleans) {
              const evidence = { cancelAccepted: row.cancelAccepted, completion, runtimeFact: fact, waitWindowElapsed, escalationExhausted };
              const decision = decideFinalStatus(evidence);
              assert.ok(decision.decided, `${JSON.stringify(evidence)} undecided`);
              assert.equal(decision.status, row.final, JSON.stringify(evidence));
            }
          }
        }
      });
    }
  });

  it("gives the reasons people read", () => {
    const settled = (completion: FinalizationEvidence["completion"], runtimeFact: FinalizationEvidence["runtimeFact"], cancelAccepted = false) =>
      decideFinalStatus({ cancelAccepted, completion, runtimeFact, waitWindowElapsed: true, escalationExhausted: false });
    assert.deepEqual(settled("succeeded", "succeeded"), { decided: true, status: "completed", reason: "the agent reported success and its process succeeded" });
    assert.deepEqual(settled("succeeded", "failed"), { decided: true, status: "failed", reason: "the agent reported success but its process failed" });
    assert.deepEqual(settled("none", "succeeded"), { decided: true, status: "failed", reason: "no completion within the wait window; the agent's process succeeded" });
    assert.deepEqual(settled("cancelled", "failed"), {
      decided: true,
      status: "failed",
      reason: "the agent reported cancellation, but no cancel was requested; its process failed",
    });
    assert.deepEqual(settled("none", "missing", true), {
      decided: true,
      status: "cancelled",
      reason: "cancelled on request; the agent sent no completion, and the runtime has no record of its process",
    });
  });

  it("gives each combination of cancel, completion and runtime fact its own reason", () => {
    // The wait window and a terminal fact's escalation do not change what happened, so they
    // are not part of the key; a running process is decided only through exhausted escalation.
    const reasonByKey = new Map<string, string>();
    const keyByReason = new Map<string, string>();
    for (const evidence of everyEvidence()) {
      const decision = decideFinalStatus(evidence);
      if (!decision.decided) continue;
      const key = `${evidence.cancelAccepted}/${evidence.completion}/${evidence.runtimeFact}`;
      assert.equal(reasonByKey.get(key) ?? decision.reason, decision.reason, `${key} has two reasons`);
      assert.equal(keyByReason.get(decision.reason) ?? key, key, `"${decision.reason}" given for two combinations`);
      reasonByKey.set(key, decision.reason);
      keyByReason.set(decision.reason, key);
    }
    assert.equal(reasonByKey.size, booleans.length * completionKinds.length * runtimeFacts.length);
  });

  describe("cancel accepted", () => {
    it("waits for the process to stop before finalizing, whatever else is known", () => {
      for (const completion of completionKinds) {
        for (const waitWindowElapsed of booleans) {
          const decision = decideFinalStatus({ cancelAccepted: true, completion, runtimeFact: "running", waitWindowElapsed, escalationExhausted: false });
          assert.deepEqual(decision, { decided: false, waitFor: ["runtime_stop"] });
        }
      }
    });

    it("finalizes as cancelled once escalation is exhausted, even if the runtime still says running", () => {
      for (const completion of completionKinds) {
        const decision = decideFinalStatus({ cancelAccepted: true, completion, runtimeFact: "running", waitWindowElapsed: false, escalationExhausted: true });
        assert.ok(decision.decided);
        assert.equal(decision.status, "cancelled");
        assert.match(decision.reason, /still running when the runtime escalation was exhausted/);
      }
    });

    it("needs no completion once the process has stopped", () => {
      for (const runtimeFact of terminalFacts) {
        const decision = decideFinalStatus({ cancelAccepted: true, completion: "none", runtimeFact, waitWindowElapsed: false, escalationExhausted: false });
        assert.ok(decision.decided && decision.status === "cancelled");
      }
    });
  });

  describe("without a cancel", () => {
    it("waits while the process runs, even with a completion", () => {
      for (const completion of completionKinds) {
        const decision = decideFinalStatus({ cancelAccepted: false, completion, runtimeFact: "running", waitWindowElapsed: true, escalationExhausted: false });
        assert.deepEqual(decision, { decided: false, waitFor: ["runtime_stop"] });
      }
    });

    it("waits for a completion or the wait window once the process has stopped", () => {
      for (const runtimeFact of terminalFacts) {
        const decision = decideFinalStatus({ cancelAccepted: false, completion: "none", runtimeFact, waitWindowElapsed: false, escalationExhausted: false });
        assert.deepEqual(decision, { decided: false, waitFor: ["completion_or_wait_window"] });
      }
    });

    it("names both missing pieces when neither has arrived", () => {
      const decision = decideFinalStatus({ cancelAccepted: false, completion: "none", runtimeFact: "running", waitWindowElapsed: false, escalationExhausted: false });
      assert.deepEqual(decision, { decided: false, waitFor: ["runtime_stop", "completion_or_wait_window"] });
    });

    it("reads a process still running after exhausted escalation like an unknown ending", () => {
      for (const completion of ["succeeded", "failed", "cancelled"] as const) {
        const stuck = decideFinalStatus({ cancelAccepted: false, completion, runtimeFact: "running", waitWindowElapsed: false, escalationExhausted: true });
        assert.ok(stuck.decided);
        assert.equal(stuck.status, tableStatus(false, completion, "unknown"));
      }
    });
  });

  it("is total: every input combination gets a well-formed answer", () => {
    const statuses = new Set(["completed", "failed", "cancelled"]);
    for (const evidence of everyEvidence()) {
      const decision = decideFinalStatus(evidence);
      if (decision.decided) {
        assert.ok(statuses.has(decision.status), JSON.stringify(evidence));
        assert.ok(decision.reason.length > 0);
      } else {
        assert.ok(decision.waitFor.length > 0, JSON.stringify(evidence));
      }
    }
  });

  it("is decided exactly when the process has stopped and the outcome is settled", () => {
    for (const evidence of everyEvidence()) {
      const stopped = evidence.runtimeFact !== "running" || evidence.escalationExhausted;
      const settled = evidence.cancelAccepted || evidence.completion !== "none" || evidence.waitWindowElapsed;
      assert.equal(decideFinalStatus(evidence).decided, stopped && settled, JSON.stringify(evidence));
    }
  });
});
