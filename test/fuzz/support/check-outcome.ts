import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";

/** Codes that say the server failed, not the input: never the answer to a bad request. */
const SERVER_FAULTS = new Set([Code.Unknown, Code.Internal, Code.DataLoss, Code.Unavailable, Code.Unimplemented]);

export interface OutcomeContext {
  /** Every secret the stack knows. */
  secrets: readonly string[];
  /** Every run id the stack knows. */
  runIds: readonly string[];
}

/**
 * The properties every answer to a fuzzed call must have: an error is a ConnectError with a
 * precise code (no server fault; no deadline, which would be a hang), INVALID_ARGUMENT names
 * its fields, and the message carries no secret and no run id the request did not itself carry
 * (a field violation may quote what the caller sent; it may never tell the caller anything new).
 * `request` is everything the caller sent, as text.
 */
export function checkOutcome(error: unknown, request: string, ctx: OutcomeContext, what: string): void {
  if (error === undefined) return;
  if (!(error instanceof ConnectError)) throw new Error(`${what}: threw a non-ConnectError: ${String(error)}`);
  const said = `${what} answered ${Code[error.code]} "${error.rawMessage}"`;
  if (SERVER_FAULTS.has(error.code)) throw new Error(`${said}: a server fault for client input`);
  if (error.code === Code.DeadlineExceeded) throw new Error(`${said}: the call hung until its deadline`);
  if (error.code === Code.InvalidArgument) {
    const violations = error.findDetails(FieldViolationsSchema).flatMap((d) => d.violations);
    if (violations.length === 0 || violations.some((v) => v.field.length === 0 || v.description.length === 0)) {
      throw new Error(`${said}: INVALID_ARGUMENT without a named field`);
    }
  }
  const message = error.rawMessage.toLowerCase();
  const sent = request.toLowerCase();
  for (const secret of ctx.secrets) {
    if (message.includes(secret.toLowerCase()) && !sent.includes(secret.toLowerCase())) throw new Error(`${said}: the message contains a secret`);
  }
  for (const id of ctx.runIds) {
    if (message.includes(id.toLowerCase()) && !sent.includes(id.toLowerCase())) throw new Error(`${said}: the message names a run the request did not`);
  }
}

/** A message (or several) as text, bigints and bytes included, to search for ids. */
export function requestText(...parts: unknown[]): string {
  return JSON.stringify(parts, (_key, value: unknown) =>
    typeof value === "bigint" ? value.toString() : value instanceof Uint8Array ? Buffer.from(value).toString("latin1") : value,
  );
}
