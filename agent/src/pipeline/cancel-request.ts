/**
 * The abort reason a session gives a run's AbortController when the control plane pushes
 * `cancel {reason, grace}`: the grace travels with the cancel because the control plane, not
 * the spec, decides how long the current step may take to stop.
 */
export class CancelRequest extends Error {
  readonly graceMs: number | undefined;

  constructor(reason: string, graceMs?: number) {
    super(reason);
    this.name = "CancelRequest";
    this.graceMs = graceMs;
  }
}

/** Text for people describing why a signal was aborted, or undefined when it says nothing useful. */
export function describeAbortReason(reason: unknown): string | undefined {
  if (typeof reason === "string") return reason || undefined;
  // A bare abort() gives a DOMException "This operation was aborted", which tells nobody anything.
  if (reason instanceof Error && reason.name !== "AbortError") return reason.message || undefined;
  return undefined;
}
