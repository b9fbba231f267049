import type { Orm } from "@corral/plumbing/db/orm.ts";
import { createSql, type Transaction } from "@corral/plumbing/db/sql.ts";
import type { PgPool } from "@corral/plumbing/db/pg-pool.ts";
import type { EventColumns } from "./event-columns.ts";

/** What the control plane needs about an attempt when its agent says hello. */
export interface AttemptRecord {
  attemptId: string;
  runId: string;
  attempt: number;
  tokenHash: string;
  expiresAt: Date;
  revokedAt: Date | null;
  runStatus: string;
  /** The resolved RunSpec, as protobuf JSON. */
  spec: unknown;
  cancelRequested: boolean;
  cancelReason: string | null;
  cancelGraceMs: number | null;
  createdAt: Date;
  runtime: string;
  repositoryUrl: string;
  /** The run's trace (its SubmitRun span), when it was traced. */
  traceParent: string | null;
  traceState: string | null;
}

export interface RunProgress {
  phase?: string;
  /** undefined: unchanged; null: no step running. */
  currentStep?: string | null;
}

export interface CompletionRecord {
  idempotencyKey: string;
  status: string;
  result: unknown;
  reason: string;
  artifactState: string | null;
}

export type CompletionVerdict =
  | { outcome: "recorded" }
  | { outcome: "conflict"; why: "different_key" | "run_terminal" };

const TERMINAL = ["completed", "failed", "cancelled"];

/** Thrown when a write is fenced off because a newer stream holds the attempt's lease. */
export class LeaseLostError extends Error {
  constructor() {
    super("lease superseded by a newer stream");
    this.name = "LeaseLostError";
  }
}

/**
 * The control plane's SQL. Every write made on behalf of a stream is fenced by the stream's
 * lease epoch in the same transaction, so a superseded stream can never write.
 */
export function createAttemptStore(orm: Orm, pool: PgPool) {
  const sql = createSql(orm);

  async function renewLease(attemptId: string, epoch: bigint, leaseMs: number, trx?: Transaction, firstEvent = false): Promise<void> {
    const affected = await sql.run(
      `update attempts set lease_expires_at = now() + (? * interval '1 millisecond')
         ${firstEvent ? ", first_event_at = coalesce(first_event_at, now())" : ""}
       where id = ? and lease_epoch = ?`,
      [leaseMs, attemptId, epoch.toString()],
      trx,
    );
    if (affected === 0) throw new LeaseLostError();
  }

  return {
    async find(runId: string, attempt: number): Promise<AttemptRecord | undefined> {
      const row = await sql.one<{
        attempt_id: string; token_hash: string; expires_at: string; revoked_at: string | null; run_status: string; spec: unknown;
        cancel_requested: boolean; cancel_reason: string | null; cancel_grace_ms: number | null; created_at: string;
        runtime: string; repository_url: string; trace_parent: string | null; trace_state: string | null;
      }>(
        `select a.id as attempt_id, c.token_hash, c.expires_at, c.revoked_at, r.status as run_status, r.spec,
                r.cancel_requested_at is not null as cancel_requested, r.cancel_reason, r.cancel_grace_ms, r.created_at,
                r.runtime, r.repository_url, r.trace_parent, r.trace_state
           from credentials c
           join attempts a on a.run_id = c.run_id and a.number = c.attempt
           join runs r on r.id = c.run_id
          where c.run_id = ? and c.attempt = ?`,
        [runId, attempt],
      );
      if (!row) return undefined;
      return {
        attemptId: row.attempt_id,
        runId,
        attempt,
        tokenHash: row.token_hash,
        expiresAt: new Date(row.expires_at),
        revokedAt: row.revoked_at ? new Date(row.revoked_at) : null,
        runStatus: row.run_status,
        spec: row.spec,
        cancelRequested: row.cancel_requested,
        cancelReason: row.cancel_reason,
        cancelGraceMs: row.cancel_grace_ms,
        createdAt: new Date(row.created_at),
        runtime: row.runtime,
        repositoryUrl: row.repository_url,
        traceParent: row.trace_parent,
        traceState: row.trace_state,
      };
    },

    /** Gives the attempt's lease to a new stream: a higher epoch fences every older stream off. */
    /** Takes the attempt's lease for a new stream, recording its holder: the agent's instance id ("" when it sends none). */
    async takeLease(record: AttemptRecord, leaseMs: number, holder: string): Promise<{ epoch: bigint; ackedSequence: bigint }> {
      return sql.transaction(async (trx) => {
        const leased = await sql.one<{ lease_epoch: string }>(
          `update attempts set lease_epoch = lease_epoch + 1, lease_expires_at = now() + (? * interval '1 millisecond'),
                  attached_at = coalesce(attached_at, now()), status = 'running', lease_holder = ?
            where id = ? returning lease_epoch`,
          [leaseMs, holder, record.attemptId],
          trx,
        );
        await sql.run(
          `update runs set status = 'running', attached_at = coalesce(attached_at, now()), updated_at = now()
            where id = ? and status = 'launching'`,
          [record.runId],
          trx,
        );
        const acked = await sql.one<{ acked: string }>(
          "select coalesce(max(sequence), 0) as acked from events where run_id = ? and attempt = ?",
          [record.runId, record.attempt],
          trx,
        );
        const epoch = BigInt(leased!.lease_epoch);
        await sql.run("select pg_notify('corral_lease', ?)", [`${record.attemptId}:${epoch}`], trx);
        await sql.run("select pg_notify('corral_run_changed', ?)", [record.runId], trx);
        return { epoch, ackedSequence: BigInt(acked!.acked) };
      });
    },

    renewLease: (attemptId: string, epoch: bigint, leaseMs: number) => renewLease(attemptId, epoch, leaseMs),

    /** The lease in force: its epoch and its holder's instance id ("" when unknown). */
    async currentLease(attemptId: string): Promise<{ epoch: bigint; holder: string }> {
      const row = await sql.one<{ lease_epoch: string; lease_holder: string | null }>(
        "select lease_epoch, lease_holder from attempts where id = ?",
        [attemptId],
      );
      return { epoch: BigInt(row?.lease_epoch ?? 0), holder: row?.lease_holder ?? "" };
    },

    /**
     * Stores a contiguous batch of events in one statement (one round trip, atomic on its own):
     * renew the lease if the epoch still holds, and only then insert, update the run's progress
     * and wake its watchers. Replays never get here (the session drops sequences it already
     * took), so the insert needs no ON CONFLICT, which costs a speculative insertion per row;
     * the unique key stays the backstop: a duplicate fails the batch, the stream ends and the
     * agent resumes from what is stored. The columns arrive as binary arrays (see event-columns),
     * with time-ordered ids.
     */
    async storeEvents(record: AttemptRecord, epoch: bigint, leaseMs: number, batch: EventColumns): Promise<void> {
      const { progress } = batch;
      const trackProgress = progress.phase !== undefined || progress.currentStep !== undefined;
      const columns = batch.columns();
      const result = await pool.query<{ leased: string }>({
        // Named: PostgreSQL parses and plans it once per connection.
        name: "corral_store_events",
        text: `with lease as (
           update attempts set lease_expires_at = now() + ($1 * interval '1 millisecond'), first_event_at = coalesce(first_event_at, now())
            where id = $2 and lease_epoch = $3 returning id
         ), stored as (
           insert into events (id, run_id, attempt, sequence, type, occurred_at, payload)
           select x.id, $4, $5, x.sequence, x.type, x.occurred_at, x.payload
             from unnest($14::uuid[], $6::bigint[], $7::text[], $8::timestamptz[], $9::bytea[]) as x(id, sequence, type, occurred_at, payload)
            where exists (select 1 from lease)
         ), progressed as (
           update runs set phase = coalesce($10, phase), current_step = case when $11 then $12 else current_step end, updated_at = now()
            where $13 and id = $4 and current_attempt = $5 and exists (select 1 from lease)
         ), woken as (
           select pg_notify('corral_run_events', $4::text) from lease
         )
         select (select count(*) from lease) as leased, (select count(*) from woken) as woken`,
        values: [
          leaseMs, record.attemptId, epoch.toString(), record.runId, record.attempt,
          columns.sequences, columns.types, columns.times, columns.payloads,
          progress.phase ?? null, progress.currentStep !== undefined, progress.currentStep ?? null, trackProgress,
          columns.ids,
        ],
      });
      if (Number(result.rows[0]!.leased) === 0) throw new LeaseLostError();
    },

    /** Records a completion idempotently: the same key always gets the same verdict. */
    async recordCompletion(record: AttemptRecord, epoch: bigint, leaseMs: number, completion: CompletionRecord): Promise<CompletionVerdict> {
      // Like every write that takes both, this takes the attempt (lease), then the run, as the
      // scheduler's finalization does. A deadlock PostgreSQL breaks all the same (with some
      // other transaction) is retried as a whole: everything it did was rolled back.
      return retryOnDeadlock(() => recordCompletionOnce(record, epoch, leaseMs, completion));
    },
  };

  async function recordCompletionOnce(record: AttemptRecord, epoch: bigint, leaseMs: number, completion: CompletionRecord): Promise<CompletionVerdict> {
    {
      return sql.transaction(async (trx) => {
        await renewLease(record.attemptId, epoch, leaseMs, trx);
        // Serialise completions of one run, so two keys cannot both be recorded.
        const run = await sql.one<{ status: string }>("select status from runs where id = ? for update", [record.runId], trx);
        const same = await sql.one<{ conflict: boolean; conflict_reason: "different_key" | "run_terminal" }>(
          "select conflict, conflict_reason from completions where run_id = ? and idempotency_key = ?",
          [record.runId, completion.idempotencyKey],
          trx,
        );
        if (same) return same.conflict ? { outcome: "conflict", why: same.conflict_reason } : { outcome: "recorded" };

        let verdict: CompletionVerdict = { outcome: "recorded" };
        if (TERMINAL.includes(run!.status)) verdict = { outcome: "conflict", why: "run_terminal" };
        else {
          const other = await sql.one(
            "select 1 from completions where run_id = ? and attempt = ? and not conflict",
            [record.runId, record.attempt],
            trx,
          );
          if (other) verdict = { outcome: "conflict", why: "different_key" };
        }
        await sql.run(
          `insert into completions (run_id, attempt, idempotency_key, status, result, reason, artifact_state, conflict, conflict_reason)
           values (?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?)`,
          [
            record.runId,
            record.attempt,
            completion.idempotencyKey,
            completion.status,
            JSON.stringify(completion.result ?? {}),
            completion.reason,
            completion.artifactState,
            verdict.outcome === "conflict",
            verdict.outcome === "conflict" ? verdict.why : null,
          ],
          trx,
        );
        if (verdict.outcome === "recorded") await sql.run("select pg_notify('corral_completion', ?)", [record.runId], trx);
        return verdict;
      });
    }
  }
}

/** Runs a transaction again when PostgreSQL chose it as a deadlock's victim (40P01), a few times. */
async function retryOnDeadlock<T>(transaction: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction();
    } catch (error) {
      if ((error as { code?: string }).code !== "40P01" || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
    }
  }
}

export type AttemptStore = ReturnType<typeof createAttemptStore>;
