import {
  decideFinalStatus,
  type AwaitedEvidence,
  type CompletionKind,
  type Decided,
  type FinalizationEvidence,
  type RuntimeFact,
} from "./decide-final-status.ts";

/**
 * The answer to each piece of evidence:
 * - "pending": not decidable yet; `waitFor` says what is missing.
 * - "decided": the run's final decision. `decidedNow` is true on exactly one answer, the one
 *   whose evidence decided it, so the caller persists the decision and cleans up once.
 * - "refused": the evidence cannot be taken. "run_terminal": a completion or a cancel after
 *   the decision (a terminal run is never reopened; the caller records the completion as a
 *   conflict, or answers the cancel with FAILED_PRECONDITION). "different_completion": a
 *   second completion that contradicts the one recorded; the first one stands.
 */
export type FinalizerAnswer =
  | { state: "pending"; waitFor: readonly AwaitedEvidence[] }
  | { state: "decided"; decision: Decided; decidedNow: boolean }
  | { state: "refused"; conflict: "run_terminal" | "different_completion"; decision: Decided | undefined };

export interface Finalizer {
  /** A cancel request. Accepted until the decision; after it, only a cancelled run takes it (as a no-op). */
  requestCancel(): FinalizerAnswer;
  completion(kind: Exclude<CompletionKind, "none">): FinalizerAnswer;
  runtimeFact(fact: RuntimeFact): FinalizerAnswer;
  waitWindowElapsed(): FinalizerAnswer;
  escalationExhausted(): FinalizerAnswer;
  /** The decision, once made; it never changes afterwards. */
  readonly decision: Decided | undefined;
  /** The evidence taken so far, for persistence and diagnostics. */
  readonly evidence: Readonly<FinalizationEvidence>;
}

/**
 * Accumulates the evidence of one attempt, in whatever order it arrives, and decides the
 * moment the table allows it (see decideFinalStatus). Evidence is idempotent: a duplicate
 * delivery changes nothing.
 *
 * Runtime facts: the attempt was launched, so it is presumed "running" until the runtime
 * says otherwise. The first fact other than "running" stands: a later one is a stale or
 * poorer observation of the same ending (a finished Job that the TTL controller then deletes
 * reads as "missing"), and a "running" after it is stale by definition.
 */
export function createFinalizer(): Finalizer {
  const evidence: FinalizationEvidence = {
    cancelAccepted: false,
    completion: "none",
    runtimeFact: "running",
    waitWindowElapsed: false,
    escalationExhausted: false,
  };
  let decision: Decided | undefined;

  const decideNow = (): FinalizerAnswer => {
    const outcome = decideFinalStatus(evidence);
    if (!outcome.decided) return { state: "pending", waitFor: outcome.waitFor };
    decision = outcome;
    return { state: "decided", decision, decidedNow: true };
  };
  const current = (): FinalizerAnswer =>
    decision === undefined ? decideNow() : { state: "decided", decision, decidedNow: false };
  // Evidence that only ever moves things forward: ignored once decided.
  const take = (record: () => void): FinalizerAnswer => {
    if (decision === undefined) record();
    return current();
  };

  return {
    requestCancel() {
      if (decision !== undefined && decision.status !== "cancelled") {
        return { state: "refused", conflict: "run_terminal", decision };
      }
      return take(() => (evidence.cancelAccepted = true));
    },
    completion(kind) {
      // The recorded completion delivered again is a duplicate, not a late or second one.
      if (evidence.completion === kind) return current();
      if (decision !== undefined) return { state: "refused", conflict: "run_terminal", decision };
      if (evidence.completion !== "none") return { state: "refused", conflict: "different_completion", decision };
      evidence.completion = kind;
      return decideNow();
    },
    runtimeFact(fact) {
      return take(() => {
        if (evidence.runtimeFact === "running") evidence.runtimeFact = fact;
      });
    },
    waitWindowElapsed() {
      return take(() => (evidence.waitWindowElapsed = true));
    },
    escalationExhausted() {
      return take(() => (evidence.escalationExhausted = true));
    },
    get decision() {
      return decision;
    },
    get evidence() {
      return { ...evidence };
    },
  };
}
