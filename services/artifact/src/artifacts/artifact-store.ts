import type { Orm } from "@corral/plumbing/db/orm.ts";
import { createSql, type Sql, type Transaction } from "@corral/plumbing/db/sql.ts";
import type { UploadState } from "@corral/plumbing/db/entities/index.ts";
import type { Principal } from "../auth/principal.ts";
import { ARTIFACT_COLUMNS, ARTIFACT_FROM, type ArtifactRow } from "./artifact-row.ts";

/** Channel of the NOTIFY sent whenever an upload commits, finishes or fails; the payload is its id. */
export const UPLOAD_CHANNEL = "corral_artifact_upload";

export interface UploadRow {
  id: string;
  run_id: string;
  name: string;
  committed_offset: string;
  sha256: string | null;
  writer_epoch: string;
  state: UploadState;
}

export type OpenUploadResult =
  | { outcome: "upload"; upload: UploadRow }
  /** The upload id is taken by an upload of another artifact (of this run or another). */
  | { outcome: "upload_id_taken" }
  | { outcome: "name_taken" }
  | { outcome: "count_exceeded"; count: number }
  | { outcome: "run_not_found" };

export type CommitResult =
  | { outcome: "committed"; othersBytes: number }
  | { outcome: "quota_exceeded"; totalBytes: number }
  | { outcome: "superseded" }
  | { outcome: "unauthenticated" };

/** Where a download stands: what is readable and whether more is coming. */
export interface UploadProgress {
  state: UploadState;
  committed: number;
  /** The artifact row, once finished. */
  size: number | null;
  /** The verified digest: set from the digest check on, when the bytes may already be in the blob store. */
  sha256: string | null;
  complete: boolean;
}

/**
 * Key of the advisory lock on one run's artifacts (the parameter is the run id). It serialises
 * the quota arithmetic of the run's uploads — the sum read after taking it is final until commit —
 * and keeps new uploads out while the retention sweeper deletes the run's artifacts. Advisory, so
 * no row that other services update (runs) is locked.
 */
export const RUN_ARTIFACTS_LOCK = "hashtext('corral:artifact-quota:' || ?)";

const lockRun = (sql: Sql, runId: string, trx: Transaction) => sql.run(`select pg_advisory_xact_lock(${RUN_ARTIFACTS_LOCK})`, [runId], trx);

/** The artifact service's SQL. Writes on behalf of an upload stream are fenced by its writer epoch. */
export function createArtifactStore(orm: Orm) {
  const sql = createSql(orm);

  /** Bytes a run's artifacts take, unfinished ones by their committed offset, leaving one upload out. */
  async function runBytes(runId: string, exceptUploadId: string, trx?: Transaction): Promise<number> {
    const row = await sql.one<{ used: string }>(
      `select coalesce(sum(case when a.completed_at is not null then a.size else coalesce(u.committed_offset, 0) end), 0) as used
         from artifacts a left join uploads u on u.id = a.upload_id
        where a.run_id = ? and a.upload_id is distinct from ?`,
      [runId, exceptUploadId],
      trx,
    );
    return Number(row!.used);
  }

  /** An attempt credential writes only while it is its run's current one, unrevoked and unexpired. */
  const credentialLive = async (principal: Principal, trx: Transaction) =>
    principal.kind === "service" ||
    (await sql.one(
      `select 1 from credentials c join runs r on r.id = c.run_id
        where c.run_id = ? and c.attempt = ? and c.token_hash = ? and c.attempt = r.current_attempt
          and c.revoked_at is null and c.expires_at > now()`,
      [principal.runId, principal.attempt, principal.tokenHash],
      trx,
    )) !== undefined;

  const notify = (uploadId: string, trx: Transaction) => sql.run(`select pg_notify('${UPLOAD_CHANNEL}', ?)`, [uploadId], trx);

  return {
    runBytes: (runId: string, exceptUploadId: string) => runBytes(runId, exceptUploadId),

    findUpload: (uploadId: string) => sql.one<UploadRow>("select * from uploads where id = ?", [uploadId]),

    /**
     * Finds the upload, or creates it with its (unfinished) artifact row: the name must be free in
     * the run and the run under its artifact count quota.
     */
    async openUpload(input: { uploadId: string; runId: string; name: string; contentType: string; attempt: number | null; maxCount: number }): Promise<OpenUploadResult> {
      const matching = (upload: UploadRow | undefined): OpenUploadResult | undefined =>
        upload && (upload.run_id === input.runId && upload.name === input.name ? { outcome: "upload", upload } : { outcome: "upload_id_taken" });
      const existing = matching(await sql.one<UploadRow>("select * from uploads where id = ?", [input.uploadId]));
      if (existing) return existing;
      return sql.transaction(async (trx): Promise<OpenUploadResult> => {
        await lockRun(sql, input.runId, trx);
        const run = await sql.one<{ current_attempt: number }>("select current_attempt from runs where id = ?", [input.runId], trx);
        if (!run) return { outcome: "run_not_found" };
        // Under the run's lock, a concurrent header with the same id has either committed or not started.
        const again = matching(await sql.one<UploadRow>("select * from uploads where id = ?", [input.uploadId], trx));
        if (again) return again;
        if (await sql.one("select 1 from artifacts where run_id = ? and name = ?", [input.runId, input.name], trx)) return { outcome: "name_taken" };
        const { count } = (await sql.one<{ count: string }>("select count(*) as count from artifacts where run_id = ?", [input.runId], trx))!;
        if (Number(count) >= input.maxCount) return { outcome: "count_exceeded", count: Number(count) };
        const upload = await sql.one<UploadRow>(
          "insert into uploads (id, run_id, name, state) values (?, ?, ?, 'open') returning *",
          [input.uploadId, input.runId, input.name],
          trx,
        );
        await sql.run(
          "insert into artifacts (run_id, name, upload_id, content_type, attempt) values (?, ?, ?, ?, ?)",
          [input.runId, input.name, input.uploadId, input.contentType, input.attempt ?? run.current_attempt],
          trx,
        );
        return { outcome: "upload", upload: upload! };
      });
    },

    /** Gives the upload to a new stream: a higher epoch fences every older stream's writes off. */
    takeOver: (uploadId: string) =>
      sql.one<UploadRow>("update uploads set writer_epoch = writer_epoch + 1, updated_at = now() where id = ? returning *", [uploadId]).then((row) => row!),

    /**
     * Commits bytes already synced to the blob store, if the stream still holds the upload, its
     * credential is still live and the run stays within its byte quota. Wakes followers.
     */
    async commitOffset(input: { upload: UploadRow; epoch: bigint; offset: number; principal: Principal; quotaBytes: number }): Promise<CommitResult> {
      return sql.transaction(async (trx): Promise<CommitResult> => {
        await lockRun(sql, input.upload.run_id, trx);
        if (!(await credentialLive(input.principal, trx))) return { outcome: "unauthenticated" };
        const othersBytes = await runBytes(input.upload.run_id, input.upload.id, trx);
        if (othersBytes + input.offset > input.quotaBytes) return { outcome: "quota_exceeded", totalBytes: othersBytes + input.offset };
        const updated = await sql.run(
          `update uploads set committed_offset = ?, updated_at = now()
            where id = ? and writer_epoch = ? and state = 'open' and committed_offset <= ?`,
          [input.offset, input.upload.id, input.epoch.toString(), input.offset],
          trx,
        );
        if (updated === 0) return { outcome: "superseded" };
        await notify(input.upload.id, trx);
        return { outcome: "committed", othersBytes };
      });
    },

    /** Records that every byte is in and matches `sha256`; from now on only finish is accepted. */
    markVerified: async (uploadId: string, epoch: bigint, sha256: string): Promise<boolean> =>
      (await sql.run(
        "update uploads set state = 'verified', sha256 = ?, updated_at = now() where id = ? and writer_epoch = ? and state = 'open'",
        [sha256, uploadId, epoch.toString()],
      )) === 1,

    /**
     * Moves the verified bytes into the blob store and points the artifact at its blob (shared
     * with every artifact of the same content), in one transaction that holds the blob row's lock
     * from before the move until the reference is committed.
     *
     * Why the move happens inside: the retention sweeper deletes a blob's file only while holding
     * that row's lock and after seeing no reference to it (see retention/blob-collector.ts). A
     * finish that deduplicates against a blob being swept at that very moment therefore either
     * waits for the sweep to commit — then the row and the file are gone, its upsert inserts a
     * new row and `moveBytes` renames its own bytes in — or locks the row first, and the sweeper
     * skips it. Moving first and locking after would let the sweeper delete the file in between,
     * leaving the new artifact pointing at nothing.
     */
    async finish(input: { uploadId: string; epoch: bigint; sha256: string; size: number; moveBytes: () => Promise<void> }): Promise<ArtifactRow | undefined> {
      return sql.transaction(async (trx) => {
        const updated = await sql.run(
          "update uploads set state = 'finished', updated_at = now() where id = ? and writer_epoch = ? and state = 'verified'",
          [input.uploadId, input.epoch.toString()],
          trx,
        );
        if (updated === 0) return undefined;
        // "do update" rather than "do nothing": it locks an existing row (and its id comes back).
        const blob = await sql.one<{ id: string }>(
          "insert into blobs (sha256, size) values (?, ?) on conflict (sha256) do update set size = excluded.size returning id",
          [input.sha256, input.size],
          trx,
        );
        await input.moveBytes();
        await sql.run("update artifacts set blob_id = ?, size = ?, completed_at = now() where upload_id = ?", [blob!.id, input.size, input.uploadId], trx);
        await notify(input.uploadId, trx);
        return sql.one<ArtifactRow>(`select ${ARTIFACT_COLUMNS} from ${ARTIFACT_FROM} where a.upload_id = ?`, [input.uploadId], trx);
      });
    },

    /** The digest did not match: nothing is stored, and the name is free again. */
    async fail(uploadId: string, epoch: bigint): Promise<boolean> {
      return sql.transaction(async (trx) => {
        const updated = await sql.run(
          "update uploads set state = 'failed', updated_at = now() where id = ? and writer_epoch = ? and state in ('open', 'verified')",
          [uploadId, epoch.toString()],
          trx,
        );
        if (updated === 0) return false;
        await sql.run("delete from artifacts where upload_id = ? and completed_at is null", [uploadId], trx);
        await notify(uploadId, trx);
        return true;
      });
    },

    artifactOfUpload: (uploadId: string) => sql.one<ArtifactRow>(`select ${ARTIFACT_COLUMNS} from ${ARTIFACT_FROM} where a.upload_id = ?`, [uploadId]),

    getArtifact: (runId: string, name: string) =>
      sql.one<ArtifactRow>(`select ${ARTIFACT_COLUMNS} from ${ARTIFACT_FROM} where a.run_id = ? and a.name = ?`, [runId, name]),

    /** A page of a run's artifacts in byte order of their names (collation-independent, so page tokens stay valid). */
    listArtifacts: (input: { runId: string; prefix: string; after: string | undefined; limit: number }) =>
      sql.all<ArtifactRow>(
        `select ${ARTIFACT_COLUMNS} from ${ARTIFACT_FROM}
          where a.run_id = ? and starts_with(a.name, ?) and (?::text is null or a.name collate "C" > ?)
          order by a.name collate "C" limit ?`,
        [input.runId, input.prefix, input.after ?? null, input.after ?? null, input.limit],
      ),

    /** What a download of an upload can read now. */
    async progress(uploadId: string): Promise<UploadProgress | undefined> {
      const row = await sql.one<{ state: UploadState; committed_offset: string; size: string | null; completed_at: unknown; sha256: string | null }>(
        `select u.state, u.committed_offset, a.size, a.completed_at, coalesce(b.sha256, u.sha256) as sha256
           from uploads u left join artifacts a on a.upload_id = u.id left join blobs b on b.id = a.blob_id
          where u.id = ?`,
        [uploadId],
      );
      if (!row) return undefined;
      const complete = row.completed_at !== null && row.completed_at !== undefined;
      return {
        state: row.state,
        committed: Number(row.committed_offset),
        size: complete ? Number(row.size) : null,
        sha256: row.sha256,
        complete,
      };
    },

    /** Upload ids in a final state or unknown, among the given ones: their partial data is garbage. */
    async settledUploads(uploadIds: string[]): Promise<string[]> {
      if (uploadIds.length === 0) return [];
      const live = await sql.all<{ id: string }>(
        "select id from uploads where id = any(?::uuid[]) and state in ('open', 'verified')",
        [`{${uploadIds.join(",")}}`],
      );
      const keep = new Set(live.map((row) => row.id));
      return uploadIds.filter((id) => !keep.has(id));
    },
  };
}

export type ArtifactStore = ReturnType<typeof createArtifactStore>;
