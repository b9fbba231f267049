import assert from "node:assert/strict";
import fc from "fast-check";
import { createFinalizer, type FinalizerAnswer } from "@corral/scheduler/finalization/create-finalizer.ts";
import { decideFinalStatus, type FinalizationEvidence } from "@corral/scheduler/finalization/decide-final-status.ts";
import { finalizationTable, rowCombinations, tableStatus } from "./finalization-table.ts";
import { anyEvidenceItem, deliver, describeItem, type EvidenceItem } from "./finalizer-evidence.ts";

const cancel: EvidenceItem = { kind: "cancel" };
const window: EvidenceItem = { kind: "window" };
const escalation: EvidenceItem = { kind: "escalation" };
const completion = (c: "succeeded" | "failed" | "cancelled"): EvidenceItem => ({ kind: "completion", completion: c });
const fact = (f: "succeeded" | "failed" | "missing" | "unknown" | "running"): EvidenceItem => ({ kind: "fact", fact: f });

function deliverAll(items: readonly EvidenceItem[]) {
  const finalizer = createFinalizer();
  const answers = items.map((item) => deliver(finalizer, item));
  return { finalizer, answers };
}

function statusOf(answer: FinalizerAnswer | undefined): string | undefined {
  return answer?.state === "decided" ? answer.decision.status : undefined;
}

describe("createFinalizer", () => {
  it("starts undecided, presuming the launched process runs", () => {
    const finalizer = createFinalizer();
    assert.equal(finalizer.decision, undefined);
    assert.equal(finalizer.evidence.runtimeFact, "running");
    assert.deepEqual(finalizer.waitWindowElapsed(), { state: "pending", waitFor: ["runtime_stop"] });
  });

  it("decides on the evidence that completes a row, in either order", () => {
    for (const items of [[completion("succeeded"), fact("succeeded")], [fact("succeeded"), completion("succeeded")]]) {
      const { answers } = deliverAll(items);
      assert.equal(answers[0]?.state, "pending");
      assert.deepEqual(answers[1], {
        state: "decided",
        decidedNow: true,
        decision: decideFinalStatus({ cancelAccepted: false, completion: "succeeded", runtimeFact: "succeeded", waitWindowElapsed: false, escalationExhausted: false }),
      });
    }
  });

  it("reports the decision as new exactly once", () => {
    const { answers } = deliverAll([fact("failed"), window, window, fact("failed"), escalation]);
    assert.deepEqual(answers.map((a) => (a.state === "decided" ? a.decidedNow : a.state)), ["pending", true, false, false, false]);
  });

  it("refuses a late completion as a conflict and keeps the decision", () => {
    const { finalizer, answers } = deliverAll([fact("succeeded"), window, completion("succeeded")]);
    assert.equal(statusOf(answers[1]), "failed");
    assert.deepEqual(answers[2], { state: "refused", conflict: "run_terminal", decision: finalizer.decision });
    assert.equal(finalizer.decision?.status, "failed");
    assert.equal(finalizer.evidence.completion, "none");
  });

  it("takes the recorded completion delivered again after the decision as a duplicate", () => {
    const { answers } = deliverAll([completion("failed"), fact("failed"), completion("failed")]);
    assert.equal(answers[2]?.state, "decided");
    assert.equal(answers[2]?.state === "decided" && answers[2].decidedNow, false);
  });

  it("keeps the first completion and refuses a contradicting one", () => {
    const { finalizer, answers } = deliverAll([completion("succeeded"), completion("failed"), fact("succeeded")]);
    assert.deepEqual(answers[1], { state: "refused", conflict: "different_completion", decision: undefined });
    assert.equal(statusOf(answers[2]), "completed");
    assert.equal(finalizer.evidence.completion, "succeeded");
  });

  it("refuses a cancel after a completed or failed decision, and takes it as a no-op after a cancelled one", () => {
    const completed = deliverAll([completion("succeeded"), fact("succeeded"), cancel]);
    assert.deepEqual(completed.answers[2], { state: "refused", conflict: "run_terminal", decision: completed.finalizer.decision });
    assert.equal(completed.finalizer.decision?.status, "completed");
    assert.equal(completed.finalizer.evidence.cancelAccepted, false);

    const cancelled = deliverAll([cancel, fact("failed"), cancel]);
    assert.equal(statusOf(cancelled.answers[1]), "cancelled");
    assert.deepEqual(cancelled.answers[2], { state: "decided", decision: cancelled.finalizer.decision, decidedNow: false });
  });

  it("holds an accepted cancel until the process stops or escalation is exhausted", () => {
    const stops = deliverAll([cancel, completion("cancelled"), fact("running"), fact("failed")]);
    assert.deepEqual(stops.answers.slice(0, 3).map((a) => a.state), ["pending", "pending", "pending"]);
    assert.equal(statusOf(stops.answers[3]), "cancelled");

    const stuck = deliverAll([cancel, fact("running"), escalation]);
    assert.equal(statusOf(stuck.answers[2]), "cancelled");
  });

  it("keeps the first terminal runtime fact (a finished Job deleted by its TTL reads as missing)", () => {
    const { finalizer, answers } = deliverAll([fact("succeeded"), fact("missing"), fact("running"), completion("succeeded")]);
    assert.equal(finalizer.evidence.runtimeFact, "succeeded");
    assert.equal(statusOf(answers[3]), "completed");
  });

  describe("properties", () => {
    // One table row's evidence (plus duplicates and "running" facts), in any order.
    const rowDelivery = fc
      .constantFrom(...finalizationTable)
      .chain((row) => fc.constantFrom(...rowCombinations(row)).map((combination) => ({ row, ...combination })))
      .chain(({ row, completion: c, fact: f }) => {
        const essential: EvidenceItem[] = [
          ...(row.cancelAccepted ? [cancel] : []),
          ...(c === "none" ? [] : [completion(c)]),
          fact(f),
          // "none" rows mean "none within the wait window"; the cancel row needs no window.
          ...(c === "none" && !row.cancelAccepted ? [window] : []),
        ];
        return fc
          .tuple(
            fc.array(fc.constantFrom(...essential), { maxLength: 3 }),
            // In the cancel row, a window may elapse too; it must not matter.
            row.cancelAccepted ? fc.array(fc.constant(window), { maxLength: 1 }) : fc.constant([]),
            // Where to slip in "running" facts, counted back from the terminal fact.
            fc.array(fc.nat(), { maxLength: 3 }),
          )
          .chain(([duplicates, extra, runningSlots]) => {
            const all = [...essential, ...duplicates, ...extra];
            return fc
              .shuffledSubarray(all, { minLength: all.length, maxLength: all.length })
              .map((shuffled) => withRunningFactsBefore(shuffled, runningSlots));
          })
          .map((items) => ({ row, completion: c, fact: f, essential, items }));
      });

    it("every interleaving of a row's evidence decides as the table says, when first determinable, for good", () => {
      fc.assert(
        fc.property(rowDelivery, fc.array(anyEvidenceItem, { maxLength: 6 }), (delivery, later) => {
          const { row, completion: c, fact: f, essential, items } = delivery;
          const { finalizer, answers } = deliverAll(items);
          const label = items.map(describeItem).join(", ");

          // Independent of the implementation: when is the outcome determinable, and how?
          const first = (matches: (item: EvidenceItem) => boolean) => {
            const index = items.findIndex(matches);
            return index === -1 ? Infinity : index;
          };
          const factAt = first((i) => i.kind === "fact" && i.fact === f);
          const cancelAt = first((i) => i.kind === "cancel");
          const completionAt = first((i) => i.kind === "completion");
          const windowAt = first((i) => i.kind === "window");
          const decisionAt = Math.max(factAt, Math.min(cancelAt, completionAt, windowAt));
          const expected =
            cancelAt <= decisionAt ? "cancelled" : tableStatus(false, completionAt <= decisionAt ? c : "none", f);

          assert.ok(Number.isFinite(decisionAt), label);
          answers.forEach((answer, index) => {
            if (index < decisionAt) assert.equal(answer.state, "pending", `${label}: #${index} decided early`);
            else if (index === decisionAt) assert.deepEqual([answer.state, answer.state === "decided" && answer.decidedNow], ["decided", true], label);
            else assert.notEqual(answer.state === "decided" && answer.decidedNow, true, `${label}: #${index} decided again`);
          });
          assert.equal(finalizer.decision?.status, expected, label);
          // All of the row's evidence in before the decision point: the row's own outcome.
          const lastEssentialAt = Math.max(...essential.map((e) => first((i) => describeItem(i) === describeItem(e))));
          if (lastEssentialAt <= decisionAt) assert.equal(finalizer.decision?.status, row.final, label);

          // Nothing after the decision reopens or changes it.
          const decision = finalizer.decision;
          for (const item of later) {
            const answer = deliver(finalizer, item);
            assert.notEqual(answer.state, "pending", `${label} + ${describeItem(item)}`);
            if (answer.state === "decided") assert.equal(answer.decidedNow, false);
            assert.equal(finalizer.decision, decision);
          }
        }),
        { numRuns: 500 },
      );
    });

    it("matches a model of the evidence, answer by answer, for any sequence at all", () => {
      fc.assert(
        fc.property(fc.array(anyEvidenceItem, { maxLength: 14 }), (items) => {
          const finalizer = createFinalizer();
          const model: FinalizationEvidence = { cancelAccepted: false, completion: "none", runtimeFact: "running", waitWindowElapsed: false, escalationExhausted: false };
          let decided: ReturnType<typeof decideFinalStatus> | undefined;
          for (const item of items) {
            const answer = deliver(finalizer, item);
            const label = `${items.map(describeItem).join(", ")} at ${describeItem(item)}`;
            if (decided?.decided) {
              const refused =
                (item.kind === "cancel" && decided.status !== "cancelled") ||
                (item.kind === "completion" && item.completion !== model.completion);
              assert.deepEqual(
                answer,
                refused ? { state: "refused", conflict: "run_terminal", decision: decided } : { state: "decided", decision: decided, decidedNow: false },
                label,
              );
              // Evidence after the decision is not taken: the record stays as it was decided.
              assert.deepEqual(finalizer.evidence, model, label);
              continue;
            }
            if (item.kind === "completion" && model.completion !== "none" && model.completion !== item.completion) {
              assert.deepEqual(answer, { state: "refused", conflict: "different_completion", decision: undefined }, label);
              continue;
            }
            if (item.kind === "cancel") model.cancelAccepted = true;
            if (item.kind === "completion") model.completion = item.completion;
            if (item.kind === "fact" && model.runtimeFact === "running") model.runtimeFact = item.fact;
            if (item.kind === "window") model.waitWindowElapsed = true;
            if (item.kind === "escalation") model.escalationExhausted = true;
            const outcome = decideFinalStatus(model);
            if (outcome.decided) {
              decided = outcome;
              assert.deepEqual(answer, { state: "decided", decision: outcome, decidedNow: true }, label);
            } else {
              assert.deepEqual(answer, { state: "pending", waitFor: outcome.waitFor }, label);
            }
            assert.deepEqual(finalizer.evidence, model, label);
          }
        }),
        { numRuns: 1000 },
      );
    });
  });
});

/** Inserts a "running" fact per slot somewhere before the first terminal fact, as a runtime reports them. */
function withRunningFactsBefore(items: readonly EvidenceItem[], slots: readonly number[]): EvidenceItem[] {
  const result = [...items];
  for (const slot of slots) {
    const terminalAt = result.findIndex((i) => i.kind === "fact" && i.fact !== "running");
    result.splice(slot % (terminalAt + 1), 0, fact("running"));
  }
  return result;
}
