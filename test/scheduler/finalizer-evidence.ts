import fc from "fast-check";
import type { CompletionKind, RuntimeFact } from "@corral/scheduler/finalization/decide-final-status.ts";
import type { Finalizer, FinalizerAnswer } from "@corral/scheduler/finalization/create-finalizer.ts";
import { runtimeFacts } from "./finalization-table.ts";

/** One delivery of evidence to a finalizer. */
export type EvidenceItem =
  | { kind: "cancel" }
  | { kind: "completion"; completion: Exclude<CompletionKind, "none"> }
  | { kind: "fact"; fact: RuntimeFact }
  | { kind: "window" }
  | { kind: "escalation" };

export function deliver(finalizer: Finalizer, item: EvidenceItem): FinalizerAnswer {
  switch (item.kind) {
    case "cancel":
      return finalizer.requestCancel();
    case "completion":
      return finalizer.completion(item.completion);
    case "fact":
      return finalizer.runtimeFact(item.fact);
    case "window":
      return finalizer.waitWindowElapsed();
    case "escalation":
      return finalizer.escalationExhausted();
  }
}

export function describeItem(item: EvidenceItem): string {
  if (item.kind === "completion") return `completion(${item.completion})`;
  if (item.kind === "fact") return `fact(${item.fact})`;
  return item.kind;
}

/** Any evidence at all, including contradicting completions and facts. */
export const anyEvidenceItem: fc.Arbitrary<EvidenceItem> = fc.oneof(
  fc.constant({ kind: "cancel" } as const),
  fc.constantFrom("succeeded", "failed", "cancelled").map((completion) => ({ kind: "completion", completion }) as const),
  fc.constantFrom(...runtimeFacts).map((fact) => ({ kind: "fact", fact }) as const),
  fc.constant({ kind: "window" } as const),
  fc.constant({ kind: "escalation" } as const),
);
