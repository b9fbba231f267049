import type { JsonValue } from "@bufbuild/protobuf";
import { detail, failedPrecondition, invalidArgument, notFound } from "@corral/plumbing/errors.ts";
import type { Sql, Transaction } from "@corral/plumbing/db/sql.ts";
import { RunStateConflictSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { TERMINAL_STATUSES, type RunRow } from "./run-row.ts";

export interface NewRun {
  id: string;
  runtime: string;
  repositoryUrl: string;
  baseRef: string;
  spec: JsonValue;
  requestId: string | undefined;
  /** The SubmitRun span's context, for the run's later spans. */
  traceContext?: { traceparent: string; tracestate: string };
}

export interface RunFilter {
  statuses: string[];
  repositoryUrl?: string;
  runtime?: string;
}

/** Position in the newest-first listing: the last run of the previous page. */
export interface ListCursor {
  createdAt: string;
  id: string;
}

export interface StoredEventRow {
  attempt: number;
  sequence: string;
  /** The RunEvent, protobuf binary. */
  payload: Uint8Array;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Reason and grace travel in a NOTIFY payload, which PostgreSQL caps at 8000 bytes.
const MAX_CANCEL_REASON = 1000;

/** The scheduler's SQL for the run API. */
export function createRunStore(sql: Sql) {
  const get = async (runId: string, trx?: Transaction, lock = false): Promise<RunRow> => {
    // A malformed id cannot exist; answering NOT_FOUND keeps PostgreSQL's cast error away.
    const row = UUID.test(runId) ? await sql.one<RunRow>(`select * from runs where id = ?${lock ? " for update" : ""}`, [runId], trx) : undefined;
    // A malformed id is not echoed: it may be anything a client pasted, a credential included.
    if (!row) throw notFound(UUID.test(runId) ? `run ${runId} not found` : "run not found (run_id is not a run id)");
    return row;
  };

  return {
    get: (runId: string) => get(runId),

    /** Stores a queued run; with a request id already used, returns that run instead. */
    async insert(run: NewRun): Promise<RunRow> {
      const inserted = await sql.one<RunRow>(
        `insert into runs (id, status, runtime, repository_url, base_ref, spec, request_id, trace_parent, trace_state)
         values (?, 'queued', ?, ?, ?, ?::jsonb, ?, ?, ?)
         on conflict (request_id) do nothing returning *`,
        [
          run.id, run.runtime, run.repositoryUrl, run.baseRef, JSON.stringify(run.spec), run.requestId ?? null,
          run.traceContext?.traceparent ?? null, run.traceContext?.tracestate || null,
        ],
      );
      if (inserted) {
        await sql.run("select pg_notify('corral_run_queued', ?)", [run.id]);
        return inserted;
      }
      return (await sql.one<RunRow>("select * from runs where request_id = ?", [run.requestId]))!;
    },

    async list(filter: RunFilter, pageSize: number, after: ListCursor | undefined): Promise<RunRow[]> {
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.statuses.length > 0) {
        where.push(`status in (${filter.statuses.map(() => "?").join(", ")})`);
        params.push(...filter.statuses);
      }
      if (filter.repositoryUrl) {
        // PostgreSQL text cannot hold NUL; no stored URL has one either.
        if (filter.repositoryUrl.includes("\0")) throw invalidArgument([{ field: "repository_url", description: "must not contain NUL characters" }]);
        where.push("repository_url = ?");
        params.push(filter.repositoryUrl);
      }
      if (filter.runtime) {
        where.push("runtime = ?");
        params.push(filter.runtime);
      }
      if (after) {
        where.push("(created_at, id) < (?::timestamptz, ?::uuid)");
        params.push(after.createdAt, after.id);
      }
      return sql.all<RunRow>(
        `select * from runs ${where.length ? `where ${where.join(" and ")}` : ""} order by created_at desc, id desc limit ?`,
        [...params, pageSize],
      );
    },

    /**
     * Records a cancel request. A queued run is cancelled at once; a launched one becomes
     * "cancelling" and the control plane holding its stream is told through NOTIFY.
     */
    async requestCancel(runId: string, reason: string, graceMs: number | undefined, onCancelledQueued?: (row: RunRow) => void): Promise<RunRow> {
      const why = reason.slice(0, MAX_CANCEL_REASON) || "cancelled by request";
      let cancelledQueued = false;
      return sql.transaction(async (trx) => {
        const run = await get(runId, trx, true);
        if (run.status === "cancelled" || run.status === "cancelling") return run;
        if (TERMINAL_STATUSES.includes(run.status)) {
          throw failedPrecondition(`run is already ${run.status}; it cannot be cancelled`, detail(RunStateConflictSchema, { status: run.status, action: "cancel" }));
        }
        let updated: RunRow | undefined;
        if (run.status === "queued") {
          cancelledQueued = true;
          updated = await sql.one<RunRow>(
            `update runs set status = 'cancelled', cancel_requested_at = now(), cancel_reason = ?, reason = ?,
                    finished_at = now(), updated_at = now() where id = ? returning *`,
            [why, `cancelled before launch: ${why}`, runId],
            trx,
          );
        } else {
          updated = await sql.one<RunRow>(
            `update runs set status = 'cancelling', cancel_requested_at = now(), cancel_reason = ?, cancel_grace_ms = ?,
                    updated_at = now() where id = ? returning *`,
            [why, graceMs ?? null, runId],
            trx,
          );
          await sql.run("select pg_notify('corral_cancel', ?)", [JSON.stringify({ runId, reason: why, graceMs })], trx);
        }
        await sql.run("select pg_notify('corral_run_changed', ?)", [runId], trx);
        return updated!;
      }).then((row) => {
        // Final without the reconciler: the caller counts it (metrics) once it is committed.
        if (cancelledQueued) onCancelledQueued?.(row);
        return row;
      });
    },

    /** Queues a terminal run again; the dispatcher gives it a new attempt and credential. */
    async retry(runId: string): Promise<RunRow> {
      return sql.transaction(async (trx) => {
        const run = await get(runId, trx, true);
        if (!TERMINAL_STATUSES.includes(run.status)) {
          throw failedPrecondition(`run is ${run.status}; only a finished run can be retried`, detail(RunStateConflictSchema, { status: run.status, action: "retry" }));
        }
        const updated = await sql.one<RunRow>(
          `update runs set status = 'queued', phase = null, current_step = null, cancel_requested_at = null, cancel_reason = null,
                  cancel_grace_ms = null, reason = null, result = null, artifact_state = null, launched_at = null,
                  attached_at = null, finished_at = null, updated_at = now()
            where id = ? returning *`,
          [runId],
          trx,
        );
        await sql.run("select pg_notify('corral_run_queued', ?)", [runId], trx);
        await sql.run("select pg_notify('corral_run_changed', ?)", [runId], trx);
        return updated!;
      });
    },

    /** Stored events after a position, in (attempt, sequence) order. */
    eventsAfter(runId: string, attempt: number, sequence: bigint, limit = 500): Promise<StoredEventRow[]> {
      return sql.all<StoredEventRow>(
        `select attempt, sequence, payload from events where run_id = ? and (attempt, sequence) > (?, ?::bigint)
          order by attempt, sequence limit ?`,
        [runId, attempt, sequence.toString(), limit],
      );
    },
  };
}

export type RunStore = ReturnType<typeof createRunStore>;
