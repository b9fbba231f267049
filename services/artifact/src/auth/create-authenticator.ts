import { createHash, timingSafeEqual } from "node:crypto";
import { credentialMatches, hashCredential, looksLikeCredential } from "@corral/plumbing/credentials.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { LimitExceededSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { detail, resourceExhausted, unauthenticated } from "@corral/plumbing/errors.ts";
import { createKeyedRateLimiter } from "@corral/plumbing/keyed-rate-limiter.ts";
import type { Principal } from "./principal.ts";

/**
 * Turns the "authorization" metadata into a Principal. Every refusal is the same
 * UNAUTHENTICATED with the same message (missing, malformed, unknown, revoked, expired, an older
 * attempt's, another run's), so a caller learns nothing about runs its credential does not cover.
 *
 * An attempt credential is good while it is its run's current attempt's, unrevoked and
 * unexpired, for reads as well as writes: a revoked credential (a finished run, a retried
 * attempt) may have leaked with the sandbox's logs, and the scheduler and CLI read with the
 * service token anyway.
 */
export function createAuthenticator(options: { sql: Sql; serviceToken?: string; callsPerMinute?: number }) {
  const { sql } = options;
  // Calls per attempt credential (the service token is not limited: it is the scheduler's and CLI's).
  const perMinute = options.callsPerMinute;
  const limiter = perMinute === undefined ? undefined : createKeyedRateLimiter({ perMinute });
  const serviceDigest = options.serviceToken === undefined ? undefined : sha256(options.serviceToken);

  return {
    async authenticate(authorization: string | null | undefined): Promise<Principal> {
      const token = bearerToken(authorization);
      if (token === undefined) throw unauthenticated();
      // Compared as digests: equal length whatever was sent, so the time taken tells nothing.
      if (serviceDigest && timingSafeEqual(sha256(token), serviceDigest)) return { kind: "service" };
      if (!looksLikeCredential(token)) throw unauthenticated();
      // Counted before the lookup, for any credential-shaped token: a guesser costs no query beyond the limit.
      const allowed = limiter?.take(token) ?? { ok: true };
      if (!allowed.ok) {
        throw resourceExhausted(
          `more than ${perMinute} artifact calls a minute with this credential; retry in ${Math.ceil(allowed.retryAfterMs / 1000)}s`,
          detail(LimitExceededSchema, { limit: "artifact_calls_per_minute", maximum: BigInt(perMinute!), retryAfter: durationFromMs(allowed.retryAfterMs) }),
        );
      }
      // The token's hash is unique (an index), so this finds the run from the credential itself:
      // QueryUpload names no run, and another run's id in a request must be told apart from ours.
      const row = await sql.one<{ run_id: string; attempt: number; token_hash: string }>(
        `select c.run_id, c.attempt, c.token_hash from credentials c join runs r on r.id = c.run_id
          where c.token_hash = ? and c.attempt = r.current_attempt and c.revoked_at is null and c.expires_at > now()`,
        [hashCredential(token)],
      );
      if (!row || !credentialMatches(token, row.token_hash)) throw unauthenticated();
      return { kind: "attempt", runId: row.run_id, attempt: row.attempt, tokenHash: row.token_hash };
    },
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

/** Refuses a principal that does not cover the run, exactly as a bad credential is refused. */
export function requireRun(principal: Principal, runId: string): void {
  if (principal.kind === "attempt" && principal.runId !== runId.toLowerCase()) throw unauthenticated();
}

function bearerToken(authorization: string | null | undefined): string | undefined {
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? "");
  return match?.[1];
}

const sha256 = (value: string) => createHash("sha256").update(value, "utf8").digest();
