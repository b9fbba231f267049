import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ArtifactSchema, type Artifact } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";

/** An artifact with what its upload and blob say about it, as the store's queries return it. */
export interface ArtifactRow {
  run_id: string;
  name: string;
  attempt: number;
  /** Final size; "0" while unfinished. */
  size: string;
  content_type: string;
  created_at: string | Date;
  completed_at: string | Date | null;
  upload_id: string | null;
  /** Set once finished. */
  sha256: string | null;
  /** The upload's committed offset; null when the upload row was swept after finishing. */
  committed_offset: string | null;
}

/** Columns of ArtifactRow; the query aliases artifacts a, blobs b, uploads u. */
export const ARTIFACT_COLUMNS = `a.run_id, a.name, a.attempt, a.size, a.content_type, a.created_at, a.completed_at, a.upload_id,
  b.sha256, u.committed_offset`;
export const ARTIFACT_FROM = "artifacts a left join blobs b on b.id = a.blob_id left join uploads u on u.id = a.upload_id";

export const isComplete = (row: ArtifactRow) => row.completed_at !== null;

/** Bytes readable now: the final size, or what the upload has committed so far. */
export const availableBytes = (row: ArtifactRow) => Number(isComplete(row) ? row.size : (row.committed_offset ?? 0));

export function toArtifactMessage(row: ArtifactRow): Artifact {
  return create(ArtifactSchema, {
    runId: row.run_id,
    name: row.name,
    attempt: row.attempt,
    size: BigInt(availableBytes(row)),
    sha256: row.sha256 ?? "",
    contentType: row.content_type,
    complete: isComplete(row),
    createdAt: timestampFromDate(new Date(row.created_at)),
    completedAt: row.completed_at ? timestampFromDate(new Date(row.completed_at)) : undefined,
  });
}
