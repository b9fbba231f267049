import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { DownloadRequest, DownloadResponseSchema } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createViolations, dataLoss, DomainError, notFound } from "@corral/plumbing/errors.ts";
import { isComplete, availableBytes, toArtifactMessage } from "../artifacts/artifact-row.ts";
import type { UploadProgress } from "../artifacts/artifact-store.ts";
import { requireRun } from "../auth/create-authenticator.ts";
import type { Principal } from "../auth/principal.ts";
import { nameField, uuidField } from "../names/request-fields.ts";
import { MissingBytesError } from "../storage/blob-store.ts";
import type { ArtifactDeps } from "../uploads/upload-deps.ts";

type DownloadResponseInit = MessageInitShape<typeof DownloadResponseSchema>;

const outOfRange = (offset: bigint, size: number) => new DomainError(Code.OutOfRange, `offset ${offset} is past the end of the artifact (${size} bytes)`);

/**
 * Download: the artifact's bytes [offset, offset + limit), in messages of at most 1 MiB. Pieces
 * are read from the store only as the response stream drains (connect-node awaits each write),
 * so a slow client holds one piece in memory, not the file.
 *
 * With follow, an unfinished upload is read up to its committed offset, then the stream waits to
 * be woken by the next commit (same process: directly; another replica: NOTIFY; or, if a
 * notification was lost, the slow poll), and ends when the upload is finished and every byte up to
 * the end (or the limit) was sent. An upload that fails its digest check ends the stream with
 * DATA_LOSS: the bytes already sent are not part of any artifact.
 */
export async function* downloadArtifact(
  deps: ArtifactDeps,
  principal: Principal,
  request: DownloadRequest,
  signal: AbortSignal,
): AsyncGenerator<DownloadResponseInit> {
  const violations = createViolations();
  const runId = uuidField(violations, "run_id", request.runId);
  nameField(violations, "name", request.name);
  violations.throwIfAny();
  requireRun(principal, runId);

  const row = await deps.store.getArtifact(runId, request.name);
  if (!row) throw notFound("no artifact of this name in this run");
  const uploadId = row.upload_id;
  const end = request.limit === 0n ? Number.POSITIVE_INFINITY : Number(request.offset + request.limit);
  let position = Number(request.offset);
  let header: DownloadResponseInit | undefined = { artifact: toArtifactMessage(row), offset: request.offset };
  let progress: UploadProgress | undefined = {
    state: isComplete(row) ? "finished" : "open",
    committed: availableBytes(row),
    size: isComplete(row) ? availableBytes(row) : null,
    sha256: row.sha256,
    complete: isComplete(row),
  };

  // Registered before the first look, so a commit between looking and waiting still wakes us.
  let changed = false;
  let wake: (() => void) | undefined;
  const unwatch =
    request.follow && uploadId
      ? deps.watch.follow(uploadId, () => {
          changed = true;
          wake?.();
        })
      : undefined;
  // Set once the partial data has moved into the blob store under the verified digest: read the blob.
  let partialGone = false;
  try {
    for (;;) {
      if (progress.state === "failed") throw dataLoss("the upload failed its digest check; nothing was stored");
      const available = progress.complete ? progress.size! : progress.committed;
      if (position > available && (progress.complete || !request.follow)) throw outOfRange(request.offset, available);
      const target = Math.min(end, available);
      if (position < target) {
        const fromBlob = progress.complete || partialGone;
        try {
          const pieces = fromBlob ? deps.blobs.readBlob(progress.sha256!, position, target) : deps.blobs.readPartial(uploadId!, position, target);
          for await (const data of pieces) {
            yield { ...header, offset: BigInt(position), data };
            header = undefined;
            position += data.byteLength;
          }
        } catch (error) {
          if (!(error instanceof MissingBytesError)) throw error;
          if (fromBlob) throw dataLoss("the stored bytes of this artifact are lost");
          // The upload was finishing while we read: its bytes are in the blob store now, under
          // the digest it was verified against. Look again, and read the rest from there.
          partialGone = true;
          progress = (await deps.store.progress(uploadId!)) ?? progress;
          if (progress.sha256 === null && progress.state !== "failed") throw dataLoss("the stored bytes of this upload are lost");
          continue;
        }
      }
      if (position >= end || (progress.complete && position >= available) || !request.follow) {
        if (header) yield header;
        return;
      }
      if (header) {
        // Tell a follower what it follows before the first byte arrives.
        yield header;
        header = undefined;
      }
      if (!changed) await sleepUntilWoken();
      // Cancelled, or the server is draining: end with that reason, never as if the upload had
      // finished (a follower would take a cut-off log for a whole one).
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new DomainError(Code.Canceled, "the call ended");
      changed = false;
      progress = await deps.store.progress(uploadId!);
      if (!progress) throw notFound("the artifact is gone");
    }
  } finally {
    unwatch?.();
  }

  function sleepUntilWoken(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, deps.followPollMs);
      wake = done;
      signal.addEventListener("abort", done, { once: true });
      if (signal.aborted) done();
    });
  }
}
