import type { CompletionKind, FinalStatus, RuntimeFact } from "@corral/scheduler/finalization/decide-final-status.ts";

export const completionKinds: readonly CompletionKind[] = ["succeeded", "failed", "cancelled", "none"];
export const runtimeFacts: readonly RuntimeFact[] = ["succeeded", "failed", "missing", "unknown", "running"];
export const terminalFacts: readonly RuntimeFact[] = ["succeeded", "failed", "missing", "unknown"];

export interface TableRow {
  name: string;
  cancelAccepted: boolean;
  completions: readonly CompletionKind[];
  facts: readonly RuntimeFact[];
  final: FinalStatus;
  /** false for the rows we added where ARCHITECTURE.md is silent. */
  contract: boolean;
}

/**
 * The finalization table of ARCHITECTURE.md, transcribed by hand as data: the oracle the
 * tests hold the implementation to. "completion none" rows mean "none within the wait window".
 */
export const finalizationTable: readonly TableRow[] = [
  { name: "1: cancel accepted", cancelAccepted: true, completions: completionKinds, facts: terminalFacts, final: "cancelled", contract: true },
  { name: "2: success, succeeded", cancelAccepted: false, completions: ["succeeded"], facts: ["succeeded"], final: "completed", contract: true },
  { name: "3: success, failed", cancelAccepted: false, completions: ["succeeded"], facts: ["failed"], final: "failed", contract: true },
  { name: "4: success, missing/unknown", cancelAccepted: false, completions: ["succeeded"], facts: ["missing", "unknown"], final: "failed", contract: true },
  { name: "5: failed, succeeded", cancelAccepted: false, completions: ["failed"], facts: ["succeeded"], final: "failed", contract: true },
  { name: "6: failed, failed", cancelAccepted: false, completions: ["failed"], facts: ["failed"], final: "failed", contract: true },
  { name: "7: failed, missing/unknown", cancelAccepted: false, completions: ["failed"], facts: ["missing", "unknown"], final: "failed", contract: true },
  { name: "8: none in window, succeeded", cancelAccepted: false, completions: ["none"], facts: ["succeeded"], final: "failed", contract: true },
  { name: "9: none in window, failed", cancelAccepted: false, completions: ["none"], facts: ["failed"], final: "failed", contract: true },
  // Where the contract is silent (see decideFinalStatus).
  { name: "cancelled completion without a cancel", cancelAccepted: false, completions: ["cancelled"], facts: terminalFacts, final: "failed", contract: false },
  { name: "none in window, missing/unknown", cancelAccepted: false, completions: ["none"], facts: ["missing", "unknown"], final: "failed", contract: false },
];

/** The one row matching a settled combination (terminal fact; completion or window elapsed). */
export function tableStatus(cancelAccepted: boolean, completion: CompletionKind, fact: RuntimeFact): FinalStatus {
  const rows = finalizationTable.filter(
    (r) => r.cancelAccepted === cancelAccepted && r.completions.includes(completion) && r.facts.includes(fact),
  );
  if (rows.length !== 1) throw new Error(`table has ${rows.length} rows for ${cancelAccepted}/${completion}/${fact}`);
  return rows[0]!.final;
}

/** Every concrete combination a row covers. */
export function rowCombinations(row: TableRow): { completion: CompletionKind; fact: RuntimeFact }[] {
  return row.completions.flatMap((completion) => row.facts.map((fact) => ({ completion, fact })));
}
