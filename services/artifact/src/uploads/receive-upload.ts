import { createHash, type Hash } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { UploadChunk, UploadFinish, UploadHeader, UploadRequest, UploadResponseSchema } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { DigestMismatchSchema, LimitExceededSchema, UploadOffsetMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import {
  aborted,
  alreadyExists,
  createViolations,
  dataLoss,
  detail,
  failedPrecondition,
  invalidArgument,
  notFound,
  resourceExhausted,
  unauthenticated,
} from "@corral/plumbing/errors.ts";
import { toArtifactMessage, type ArtifactRow } from "../artifacts/artifact-row.ts";
import type { UploadRow } from "../artifacts/artifact-store.ts";
import { requireRun } from "../auth/create-authenticator.ts";
import type { Principal } from "../auth/principal.ts";
import { contentTypeField, nameField, sha256Field, uuidField } from "../names/request-fields.ts";
import { MissingBytesError, type PartialWriter } from "../storage/blob-store.ts";
import { abortable } from "./abortable.ts";
import { createOffsetCommitter } from "./offset-committer.ts";
import type { ArtifactDeps } from "./upload-deps.ts";
import { trace } from "@opentelemetry/api";
import { runAttributes } from "@corral/plumbing/telemetry/trace-context.ts";

type UploadResponseInit = MessageInitShape<typeof UploadResponseSchema>;

/** Largest chunk, as the contract says. */
export const MAX_CHUNK_BYTES = 1024 * 1024;

/** Least time between two commits of one upload's offset (see createOffsetCommitter). */
export const COMMIT_INTERVAL_MS = 200;

const superseded = () => aborted("this upload was taken over by a newer stream");
const failedUpload = () =>
  failedPrecondition("this upload failed its digest check and stored nothing; start again with a new upload_id");
const lostBytes = () => dataLoss("the stored bytes of this upload are lost; start again with a new upload_id");

/**
 * One Upload stream: header, chunks in offset order from the committed offset, finish. Each chunk
 * is written to the blob store before the next message is read (HTTP/2 flow control holds the
 * client back meanwhile, so memory stays flat); committing offsets runs beside it (see
 * createOffsetCommitter). A stream that ends, is cancelled or is taken over keeps what it
 * committed, and whatever it wrote is committed first, so the client resumes from there.
 */
export async function receiveUpload(
  deps: ArtifactDeps,
  principal: Principal,
  requests: AsyncIterable<UploadRequest>,
  signal: AbortSignal,
): Promise<UploadResponseInit> {
  // Stops reading when the call ends or a newer stream takes the upload over.
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  const iterator = requests[Symbol.asyncIterator]();
  const next = () => abortable(iterator.next(), stop.signal);
  try {
    const first = await next();
    if (first.done || first.value.message.case !== "header") {
      throw invalidArgument([{ field: "header", description: "the first message must be the header" }]);
    }
    const header = validateHeader(first.value.message.value);
    requireRun(principal, header.runId);
    trace.getActiveSpan()?.setAttributes({ ...runAttributes({ runId: header.runId }), "corral.artifact": header.name });
    const upload = await openUpload(deps, principal, header);
    if (upload.state === "finished") return await finishedResponse(deps, upload.id);
    if (upload.state === "failed") throw failedUpload();

    const claim = deps.writers.claim(upload.id, () => stop.abort(superseded()));
    try {
      await abortable(claim.ready, stop.signal);
      const owned = await deps.store.takeOver(upload.id);
      return await writeUpload(deps, principal, owned, next, (error) => stop.abort(error));
    } finally {
      claim.release();
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // Not awaited: a pending read of a stream that went away may never settle.
    iterator.return?.().catch(() => {});
  }
}

function validateHeader(header: UploadHeader) {
  const violations = createViolations();
  const uploadId = uuidField(violations, "header.upload_id", header.uploadId);
  const runId = uuidField(violations, "header.run_id", header.runId);
  nameField(violations, "header.name", header.name);
  const contentType = contentTypeField(violations, "header.content_type", header.contentType);
  violations.throwIfAny();
  return { uploadId, runId, name: header.name, contentType };
}

async function openUpload(deps: ArtifactDeps, principal: Principal, header: ReturnType<typeof validateHeader>): Promise<UploadRow> {
  const opened = await deps.store.openUpload({
    ...header,
    attempt: principal.kind === "attempt" ? principal.attempt : null,
    maxCount: deps.limits.runQuotaCount,
  });
  switch (opened.outcome) {
    case "upload":
      return opened.upload;
    case "upload_id_taken":
      // Says nothing about the other upload: not its run, not its name.
      throw alreadyExists("header.upload_id is in use by another upload; choose a new uuid");
    case "name_taken":
      throw alreadyExists("this run already has an artifact of this name; artifacts are immutable");
    case "count_exceeded":
      throw resourceExhausted(
        `the run has ${opened.count} artifacts, its quota`,
        detail(LimitExceededSchema, { limit: "artifact_count", maximum: BigInt(deps.limits.runQuotaCount), actual: BigInt(opened.count + 1) }),
      );
    case "run_not_found":
      // Only the service token gets here: an attempt credential names an existing run.
      throw notFound("no such run");
  }
}

async function finishedResponse(deps: ArtifactDeps, uploadId: string): Promise<UploadResponseInit> {
  const row = await deps.store.artifactOfUpload(uploadId);
  if (!row) throw notFound("the artifact of this upload is gone");
  return { uploadId, committedOffset: BigInt(row.size), artifact: toArtifactMessage(row) };
}

/** The part of a stream that holds the upload: chunks and finish, fenced by the writer epoch. */
async function writeUpload(
  deps: ArtifactDeps,
  principal: Principal,
  upload: UploadRow,
  next: () => Promise<IteratorResult<UploadRequest>>,
  /** Ends the stream now, even while it waits for the client's next message. */
  end: (error: unknown) => void,
): Promise<UploadResponseInit> {
  if (upload.state === "finished") return finishedResponse(deps, upload.id);
  if (upload.state === "failed") throw failedUpload();
  const { limits, store, blobs } = deps;
  const epoch = BigInt(upload.writer_epoch);
  const start = Number(upload.committed_offset);
  let othersBytes = await store.runBytes(upload.run_id, upload.id);
  let writer: PartialWriter | undefined;
  let hash: Hash | undefined;

  const committer = createOffsetCommitter({
    start,
    minIntervalMs: deps.commitIntervalMs ?? COMMIT_INTERVAL_MS,
    onError: end,
    commit: async (offset) => {
      // Durable first, recorded second: the committed offset never runs ahead of the disk.
      await writer!.sync();
      const result = await store.commitOffset({ upload, epoch, offset, principal, quotaBytes: limits.runQuotaBytes });
      switch (result.outcome) {
        case "committed":
          othersBytes = result.othersBytes;
          deps.watch.notify(upload.id);
          return;
        case "quota_exceeded":
          // Only when concurrent uploads of the run together overshoot; the per-chunk check catches the rest.
          throw quotaExceeded(limits.runQuotaBytes, result.totalBytes);
        case "superseded":
          throw superseded();
        case "unauthenticated":
          throw unauthenticated();
      }
    },
  });

  /** The digest of everything so far, from the stored prefix when this stream resumed an upload. */
  const digestState = async (): Promise<Hash> => {
    if (hash) return hash;
    const fresh = createHash("sha256");
    try {
      for await (const piece of blobs.readPartial(upload.id, 0, start)) fresh.update(piece);
    } catch (error) {
      if (error instanceof MissingBytesError) throw lostBytes();
      throw error;
    }
    return (hash = fresh);
  };

  const onChunk = async (chunk: UploadChunk): Promise<void> => {
    if (upload.state === "verified") throw failedPrecondition("every byte of this upload is in and verified; send finish");
    const offset = committer.written;
    if (chunk.offset !== BigInt(offset)) {
      const committed = await committer.flush();
      throw failedPrecondition(
        `chunk.offset is ${chunk.offset} but the committed offset is ${committed}; resume from there`,
        detail(UploadOffsetMismatchSchema, { committedOffset: BigInt(committed), offset: chunk.offset }),
      );
    }
    const length = chunk.data.byteLength;
    if (length > MAX_CHUNK_BYTES) throw invalidArgument([{ field: "chunk.data", description: `must be at most ${MAX_CHUNK_BYTES} bytes` }]);
    const end = offset + length;
    if (end > limits.maxArtifactBytes) {
      throw resourceExhausted(
        `an artifact may have at most ${limits.maxArtifactBytes} bytes`,
        detail(LimitExceededSchema, { limit: "artifact_size", maximum: BigInt(limits.maxArtifactBytes), actual: BigInt(end) }),
      );
    }
    if (othersBytes + end > limits.runQuotaBytes) throw quotaExceeded(limits.runQuotaBytes, othersBytes + end);
    if (length === 0) return;
    const digest = await digestState();
    // Hashed while the write is under way (it runs on libuv's thread pool): the two overlap.
    const written = writer!.write(offset, chunk.data);
    try {
      digest.update(chunk.data);
    } finally {
      await written;
    }
    deps.metrics?.uploaded(length);
    committer.advance(end);
  };

  const complete = async (sha256: string, size: number): Promise<UploadResponseInit> => {
    let row: ArtifactRow | undefined;
    try {
      // The move happens inside finish's transaction, under the blob row's lock: see finish.
      row = await store.finish({ uploadId: upload.id, epoch, sha256, size, moveBytes: () => blobs.commitPartial(upload.id, sha256) });
    } catch (error) {
      if (error instanceof MissingBytesError) throw lostBytes();
      throw error;
    }
    if (!row) throw superseded();
    deps.watch.notify(upload.id);
    deps.metrics?.stored();
    deps.logger.info({ runId: upload.run_id, uploadId: upload.id, size, sha256 }, "artifact stored");
    return { uploadId: upload.id, committedOffset: BigInt(size), artifact: toArtifactMessage(row) };
  };

  const rejectDigest = async (declared: string, actual: string): Promise<never> => {
    if (!(await store.fail(upload.id, epoch))) throw superseded();
    deps.watch.notify(upload.id);
    // After the row says failed: a crash in between leaves a file the sweeper removes, never a row
    // pointing at missing bytes.
    await blobs.discardPartial(upload.id);
    throw dataLoss(
      "the bytes received do not match finish.sha256; nothing was stored",
      detail(DigestMismatchSchema, { declaredSha256: declared, actualSha256: actual }),
    );
  };

  const onFinish = async (finish: UploadFinish): Promise<UploadResponseInit> => {
    const violations = createViolations();
    const declared = sha256Field(violations, "finish.sha256", finish.sha256);
    violations.throwIfAny();
    const size = await committer.flush();
    if (finish.size !== BigInt(size)) {
      // Nothing is lost: a client that sent too little can resume and send the rest.
      throw invalidArgument([{ field: "finish.size", description: `is ${finish.size}, but ${size} bytes were committed` }]);
    }
    if (upload.state === "verified") {
      // A retry of a finish that was cut short after the digest check (crash, dropped stream).
      if (declared !== upload.sha256) return rejectDigest(declared, upload.sha256!);
      return complete(declared, size);
    }
    const actual = (await digestState()).digest("hex");
    if (actual !== declared) return rejectDigest(declared, actual);
    if (!(await store.markVerified(upload.id, epoch, declared))) throw superseded();
    return complete(declared, size);
  };

  try {
    if (upload.state === "open") {
      try {
        writer = await blobs.openPartial(upload.id, start);
      } catch (error) {
        if (error instanceof MissingBytesError) throw lostBytes();
        throw error;
      }
    }
    for (;;) {
      const item = await next();
      if (item.done) return { uploadId: upload.id, committedOffset: BigInt(await committer.flush()) };
      const message = item.value.message;
      switch (message.case) {
        case "chunk":
          await onChunk(message.value);
          break;
        case "finish":
          return await onFinish(message.value);
        case "header":
          throw invalidArgument([{ field: "header", description: "must be the first message only" }]);
        default:
          throw invalidArgument([{ field: "message", description: "must be a header, a chunk or a finish" }]);
      }
    }
  } finally {
    // Whatever ended the stream, keep what was written: the client resumes from it.
    await committer.flush().catch((error: unknown) => deps.logger.debug({ err: error, uploadId: upload.id }, "final commit of an ended upload stream failed"));
    await writer?.close().catch(() => {});
  }
}

function quotaExceeded(maximum: number, actual: number) {
  return resourceExhausted(
    `the run's artifacts may have at most ${maximum} bytes together`,
    detail(LimitExceededSchema, { limit: "artifact_bytes", maximum: BigInt(maximum), actual: BigInt(actual) }),
  );
}
