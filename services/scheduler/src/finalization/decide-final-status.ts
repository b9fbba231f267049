/** What the agent's completion said, or "none" when no completion has been recorded. */
export type CompletionKind = "succeeded" | "failed" | "cancelled" | "none";

/**
 * What the runtime says about the attempt's process. "missing": the runtime has no record of
 * it (deleted, never created). "unknown": the runtime cannot tell how it ended; the caller
 * reports it only once it has given up asking. "running": not ended, as far as it knows.
 */
export type RuntimeFact = "succeeded" | "failed" | "missing" | "unknown" | "running";

export type FinalStatus = "completed" | "failed" | "cancelled";

/** Everything finalization looks at for one attempt. */
export interface FinalizationEvidence {
  /** A cancel request was accepted before the run was decided. */
  cancelAccepted: boolean;
  completion: CompletionKind;
  runtimeFact: RuntimeFact;
  /** The caller's window for a completion to arrive has run out. */
  waitWindowElapsed: boolean;
  /**
   * The scheduler has escalated through the runtime (kill the process, stop the container,
   * delete the Job) and stopped waiting for the process to end. From then on "running" no
   * longer holds finalization back: it reads as "the runtime cannot say how it ended".
   */
  escalationExhausted: boolean;
}

/**
 * What finalization still waits for:
 * - "runtime_stop": a runtime fact other than "running", or the escalation to be exhausted;
 * - "completion_or_wait_window": a completion, or the end of the wait window.
 */
export type AwaitedEvidence = "runtime_stop" | "completion_or_wait_window";

export type FinalDecision =
  | { decided: false; waitFor: readonly AwaitedEvidence[] }
  | { decided: true; status: FinalStatus; reason: string };

export type Decided = Extract<FinalDecision, { decided: true }>;

/**
 * The finalization table of ARCHITECTURE.md, as a pure function.
 *
 * Where the table is silent:
 * - Nothing is final while the process may still run (fact "running", escalation not
 *   exhausted). The table's cancel row holds for "any" completion and fact, yet finalizing
 *   a cancel before the process has stopped would report "cancelled" for a sandbox that is
 *   still pushing; and without a cancel, the rows need a fact that is not "running".
 * - A cancel settles the outcome as soon as the process has stopped: no completion needs to
 *   be awaited, as none could change it.
 * - A "cancelled" completion without an accepted cancel is a failure: the agent stopped on
 *   its own (a runtime SIGTERM, an eviction, a bug), and nobody asked it to.
 * - No completion within the wait window with the process "missing" or "unknown" is a failure,
 *   like every other row without a confirmed success.
 */
export function decideFinalStatus(evidence: FinalizationEvidence): FinalDecision {
  const processStopped = evidence.runtimeFact !== "running" || evidence.escalationExhausted;
  if (evidence.cancelAccepted) {
    if (!processStopped) return { decided: false, waitFor: ["runtime_stop"] };
    return { decided: true, status: "cancelled", reason: cancelledReason(evidence) };
  }
  const waitFor: AwaitedEvidence[] = [];
  if (!processStopped) waitFor.push("runtime_stop");
  if (evidence.completion === "none" && !evidence.waitWindowElapsed) waitFor.push("completion_or_wait_window");
  if (waitFor.length > 0) return { decided: false, waitFor };

  const process = (subject: string) => processPhrase(evidence.runtimeFact, subject);
  switch (evidence.completion) {
    case "succeeded":
      return evidence.runtimeFact === "succeeded"
        ? { decided: true, status: "completed", reason: `the agent reported success and ${process("its process")}` }
        : failed(`the agent reported success but ${process("its process")}`);
    case "failed":
      return failed(`the agent reported failure; ${process("its process")}`);
    case "cancelled":
      return failed(`the agent reported cancellation, but no cancel was requested; ${process("its process")}`);
    case "none":
      return failed(`no completion within the wait window; ${process("the agent's process")}`);
  }
}

function failed(reason: string): Decided {
  return { decided: true, status: "failed", reason };
}

function cancelledReason(evidence: FinalizationEvidence): string {
  const completion = {
    succeeded: "the agent had reported success",
    failed: "the agent had reported failure",
    cancelled: "the agent stopped as asked",
    none: "the agent sent no completion",
  }[evidence.completion];
  return `cancelled on request; ${completion}, and ${processPhrase(evidence.runtimeFact, "its process")}`;
}

function processPhrase(fact: RuntimeFact, subject: string): string {
  switch (fact) {
    case "succeeded":
      return `${subject} succeeded`;
    case "failed":
      return `${subject} failed`;
    case "missing":
      return `the runtime has no record of ${subject}`;
    case "unknown":
      return `the runtime cannot say how ${subject} ended`;
    case "running":
      return `${subject} was still running when the runtime escalation was exhausted`;
  }
}
