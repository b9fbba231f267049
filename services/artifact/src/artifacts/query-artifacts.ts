import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ListRequest,
  ListResponseSchema,
  QueryUploadRequest,
  QueryUploadResponseSchema,
  StatRequest,
  StatResponseSchema,
} from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createViolations, failedPrecondition, notFound } from "@corral/plumbing/errors.ts";
import { requireRun } from "../auth/create-authenticator.ts";
import type { Principal } from "../auth/principal.ts";
import { nameField, prefixField, uuidField } from "../names/request-fields.ts";
import { toArtifactMessage } from "./artifact-row.ts";
import type { ArtifactStore } from "./artifact-store.ts";

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

export async function statArtifact(store: ArtifactStore, principal: Principal, request: StatRequest): Promise<MessageInitShape<typeof StatResponseSchema>> {
  const violations = createViolations();
  const runId = uuidField(violations, "run_id", request.runId);
  nameField(violations, "name", request.name);
  violations.throwIfAny();
  requireRun(principal, runId);
  const row = await store.getArtifact(runId, request.name);
  if (!row) throw notFound("no artifact of this name in this run");
  return { artifact: toArtifactMessage(row) };
}

export async function listArtifacts(store: ArtifactStore, principal: Principal, request: ListRequest): Promise<MessageInitShape<typeof ListResponseSchema>> {
  const violations = createViolations();
  const runId = uuidField(violations, "run_id", request.runId);
  prefixField(violations, "name_prefix", request.namePrefix);
  if (request.pageSize > MAX_PAGE_SIZE) violations.add("page_size", `must be at most ${MAX_PAGE_SIZE}`);
  const after = request.pageToken === "" ? undefined : decodePageToken(request.pageToken);
  if (after === null) violations.add("page_token", "is not a token this server issued");
  violations.throwIfAny();
  requireRun(principal, runId);
  const pageSize = request.pageSize || DEFAULT_PAGE_SIZE;
  const rows = await store.listArtifacts({ runId, prefix: request.namePrefix, after: after ?? undefined, limit: pageSize + 1 });
  const page = rows.slice(0, pageSize);
  return {
    artifacts: page.map(toArtifactMessage),
    nextPageToken: rows.length > pageSize ? encodePageToken(page.at(-1)!.name) : "",
  };
}

/**
 * QueryUpload names no run, so the upload decides it. An upload of another run is answered
 * exactly like one that does not exist.
 */
export async function queryUpload(store: ArtifactStore, principal: Principal, request: QueryUploadRequest): Promise<MessageInitShape<typeof QueryUploadResponseSchema>> {
  const violations = createViolations();
  const uploadId = uuidField(violations, "upload_id", request.uploadId);
  violations.throwIfAny();
  const upload = await store.findUpload(uploadId);
  if (!upload || (principal.kind === "attempt" && upload.run_id !== principal.runId)) throw notFound("no upload with this id");
  if (upload.state === "failed") throw failedPrecondition("this upload failed its digest check and stored nothing; start again with a new upload_id");
  const finished = upload.state === "finished";
  const row = finished ? await store.artifactOfUpload(uploadId) : undefined;
  return {
    committedOffset: BigInt(upload.committed_offset),
    finished,
    artifact: row ? toArtifactMessage(row) : undefined,
  };
}

// Page tokens carry the last name of the page. Opaque to clients, validated on the way back in.
const encodePageToken = (name: string) => Buffer.from(JSON.stringify({ after: name }), "utf8").toString("base64url");

/** null when the token is not one of ours. */
function decodePageToken(token: string): string | null {
  try {
    const value = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { after?: unknown };
    return typeof value.after === "string" && value.after.length > 0 ? value.after : null;
  } catch {
    return null;
  }
}
