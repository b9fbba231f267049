import { Code } from "@connectrpc/connect";

/**
 * Why a session ended for good:
 * - unauthenticated: the control plane refused the credential (invalid, expired, revoked);
 * - refused: it refused the attempt (no shared protocol version, run already finished, or a
 *   request it calls invalid) — retrying cannot help;
 * - superseded: a newer stream holds the attempt's lease; two agents must not both run it;
 * - unreachable: no stream could be opened for longer than the give-up time;
 * - protocol: the control plane broke the protocol (welcome without an assignment, lost acks);
 * - aborted: the agent itself stopped the session.
 */
export type SessionFailureKind = "unauthenticated" | "refused" | "superseded" | "unreachable" | "protocol" | "aborted";

/** The final error of an agent session, with the gRPC status that caused it when there was one. */
export class SessionFailure extends Error {
  readonly kind: SessionFailureKind;
  readonly code: Code | undefined;

  constructor(kind: SessionFailureKind, message: string, code?: Code) {
    super(message);
    this.name = "SessionFailure";
    this.kind = kind;
    this.code = code;
  }
}
