import type { Orm } from "@corral/plumbing/db/orm.ts";
import { createSql } from "@corral/plumbing/db/sql.ts";
import { RUN_ARTIFACTS_LOCK, UPLOAD_CHANNEL } from "../artifacts/artifact-store.ts";

// A blob is referenced while an artifact points at it, or while a verified upload may still
// finish into it (a finish cut short after its bytes moved in: the client's retry needs them).
const UNREFERENCED = `not exists (select 1 from artifacts a where a.blob_id = b.id)
  and not exists (select 1 from uploads u where u.state = 'verified' and u.sha256 = b.sha256)`;

export interface ExpiredRun {
  id: string;
  /** As PostgreSQL gave it, so that paging compares exactly (microseconds). */
  finished_at: string;
}

/** The retention sweeper's SQL. Every statement compares times with the database's clock. */
export function createRetentionStore(orm: Orm) {
  const sql = createSql(orm);
  const older = "now() - (? * interval '1 millisecond')";

  return {
    /**
     * Runs that finished more than `ageMs` ago and still have artifacts or uploads, oldest first,
     * after `after` (the last run of the previous page). A run that has not finished (finished_at
     * null) is never expired, however old.
     */
    expiredRuns: (ageMs: number, after: ExpiredRun | undefined, limit: number) =>
      sql.all<ExpiredRun>(
        `select r.id, r.finished_at::text as finished_at from runs r
          where r.finished_at < ${older}
            and (?::timestamptz is null or (r.finished_at, r.id) > (?::timestamptz, ?::uuid))
            and (exists (select 1 from uploads u where u.run_id = r.id) or exists (select 1 from artifacts a where a.run_id = r.id))
          order by r.finished_at, r.id limit ?`,
        [ageMs, after?.finished_at ?? null, after?.finished_at ?? null, after?.id ?? null, limit],
      ),

    /**
     * Deletes a run's artifacts and uploads, if it is still past retention. Undefined when the
     * run's lock is taken (an upload of the run committing, or another replica's sweeper on it):
     * the next pass tries again. Uploads are locked before artifacts, in the order finish takes
     * them, so a finishing upload and the sweeper wait for each other instead of deadlocking.
     * A stream still writing to one of these uploads is fenced off at its next commit.
     */
    async deleteRunArtifacts(runId: string, ageMs: number): Promise<{ artifacts: number; uploadIds: string[] } | undefined> {
      return sql.transaction(async (trx) => {
        const lock = await sql.one<{ locked: boolean }>(`select pg_try_advisory_xact_lock(${RUN_ARTIFACTS_LOCK}) as locked`, [runId], trx);
        if (!lock?.locked) return undefined;
        if (!(await sql.one(`select 1 from runs where id = ? and finished_at < ${older}`, [runId, ageMs], trx))) return { artifacts: 0, uploadIds: [] };
        await sql.run("select id from uploads where run_id = ? order by id for update", [runId], trx);
        const artifacts = await sql.run("delete from artifacts where run_id = ?", [runId], trx);
        const uploads = await sql.all<{ id: string }>("delete from uploads where run_id = ? returning id", [runId], trx);
        // Followers of these uploads wake up and find the artifact gone.
        for (const { id } of uploads) await sql.run(`select pg_notify('${UPLOAD_CHANNEL}', ?)`, [id], trx);
        return { artifacts, uploadIds: uploads.map((row) => row.id) };
      });
    },

    /**
     * Gives a row to blobs that have none (the bytes of a finish that was cut short after they
     * moved in, and never retried), so that the row-lock protocol of collectBlobs covers them too.
     * A finish inserting the same row concurrently makes this insert wait for it, then do nothing.
     */
    async adoptBlobs(blobs: { sha256: string; size: number }[]): Promise<number> {
      if (blobs.length === 0) return 0;
      const adopted = await sql.all<{ sha256: string }>(
        `insert into blobs (sha256, size)
         select f.sha256, f.size from unnest(?::text[], ?::bigint[]) as f(sha256, size)
          where not exists (select 1 from blobs b where b.sha256 = f.sha256)
         on conflict (sha256) do nothing returning sha256`,
        [`{${blobs.map((b) => b.sha256).join(",")}}`, `{${blobs.map((b) => b.size).join(",")}}`],
      );
      return adopted.length;
    },

    /**
     * Deletes up to `limit` blobs nothing refers to: their rows, and their bytes through
     * `deleteBytes`, all in one transaction that holds the rows' locks.
     *
     * The race this settles: an upload that deduplicates against a blob at the moment the blob is
     * swept. A finish locks the blob row (its upsert) before it looks for the blob's bytes and
     * keeps the lock until its artifact points at the row (ArtifactStore.finish). Here, the rows
     * are locked with SKIP LOCKED — a blob a finish holds is simply left for the next pass, and two
     * replicas' sweepers share the work instead of queueing — and then deleted by a second
     * statement that checks for references again with a fresh snapshot: once we hold the lock, no
     * new reference can appear, and one committed just before is seen. The bytes go before the
     * commit, under the lock, so a finish waiting on the row finds them gone and moves its own in.
     * If the transaction fails after some bytes went, the rows stay without bytes; nothing points
     * at them, a finish of that content moves its bytes in again, and the next pass deletes them.
     */
    async collectBlobs(limit: number, deleteBytes: (sha256: string) => Promise<void>): Promise<{ examined: number; deleted: string[] }> {
      return sql.transaction(async (trx) => {
        const candidates = await sql.all<{ id: string }>(`select b.id from blobs b where ${UNREFERENCED} limit ? for update of b skip locked`, [limit], trx);
        if (candidates.length === 0) return { examined: 0, deleted: [] };
        const deleted = await sql.all<{ sha256: string }>(
          `delete from blobs b where b.id = any(?::uuid[]) and ${UNREFERENCED} returning b.sha256`,
          [`{${candidates.map((c) => c.id).join(",")}}`],
          trx,
        );
        for (const { sha256 } of deleted) await deleteBytes(sha256);
        return { examined: candidates.length, deleted: deleted.map((row) => row.sha256) };
      });
    },
  };
}

export type RetentionStore = ReturnType<typeof createRetentionStore>;
