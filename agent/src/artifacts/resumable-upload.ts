import { createHash, randomUUID } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import pRetry from "p-retry";
import { UploadRequestSchema, type Artifact, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { UploadOffsetMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { createNotifier } from "../session/notifier.ts";
import type { ArtifactClient } from "./artifact-client.ts";

/** Largest chunk the ArtifactService takes (its MAX_CHUNK_BYTES). */
export const MAX_CHUNK_BYTES = 1024 * 1024;

export interface ResumableUploadOptions {
  client: ArtifactClient;
  runId: string;
  /** Artifact name, such as "attempts/1/run.log". */
  name: string;
  contentType?: string;
  /**
   * The local file whose bytes are uploaded. It may grow while the upload is open (the run
   * log's spool), but bytes once made available (`extend`) must never change.
   */
  path: string;
  /** The upload's id; a fresh uuid by default. */
  uploadId?: string;
  logger: Logger;
  /** Bytes per chunk, at most MAX_CHUNK_BYTES. */
  chunkBytes?: number;
  /** Backoff between tries: exponential from `minDelayMs` to `maxDelayMs`, randomised. */
  retry?: { minDelayMs?: number; maxDelayMs?: number };
}

/** What the artifact service stored. */
export interface UploadedArtifact {
  name: string;
  size: number;
  sha256: string;
}

/** Why an upload was given up: a refusal that retrying cannot change, or the deadline. */
export class UploadFailed extends Error {
  /** The gRPC status of the last refusal, when there was one. */
  readonly code: Code | undefined;

  constructor(message: string, code?: Code) {
    super(message);
    this.name = "UploadFailed";
    this.code = code;
  }
}

/** Statuses after which the same request can succeed: the service or the network was down or busy. */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Internal, Code.Unknown, Code.Canceled]);

/**
 * One artifact upload through `ArtifactService/Upload`, resumable in the ByteStream manner.
 *
 * The upload opens a stream at once (the header makes the artifact visible, so a live log can
 * be followed from its first byte) and sends every byte made available with `extend` as a
 * chunk at its offset. When a stream breaks, the next try asks `QueryUpload` for the committed
 * offset and sends only what follows it; tries back off exponentially with jitter (p-retry)
 * until `finish`'s deadline. Refusals that no retry can change (the credential, the name, a
 * quota, a digest) end the upload at once.
 *
 * Memory stays flat whatever the size: chunks are read from the file as the transport takes
 * them (HTTP/2 flow control holds the generator back), and the sha256 is computed on the way;
 * a resumed stream re-sends bytes already hashed without hashing them again, since the file
 * does not change under them.
 */
export function createResumableUpload(options: ResumableUploadOptions) {
  const { client, logger } = options;
  const log = logger.child({ artifact: options.name });
  const uploadId = options.uploadId ?? randomUUID();
  const chunkBytes = Math.min(options.chunkBytes ?? MAX_CHUNK_BYTES, MAX_CHUNK_BYTES);
  const minDelayMs = options.retry?.minDelayMs ?? 200;
  const maxDelayMs = options.retry?.maxDelayMs ?? 5_000;

  const stop = new AbortController(); // gives the upload up: deadline or abort()
  const more = createNotifier(); // new bytes, the seal, or the stop
  let available = 0;
  let sealed: number | undefined;
  let committed = 0;
  let bytesSent = 0;
  let streams = 0;
  let lastError: unknown;
  let file: Promise<FileHandle> | undefined;
  let closed = false;
  const hash = createHash("sha256");
  let hashed = 0;
  let digest: string | undefined;

  const onStop = () => more.notify();
  stop.signal.addEventListener("abort", onStop, { once: true });

  const fileHandle = () => {
    // A stream abandoned when the upload ended may still ask; it must not reopen the file.
    if (closed) throw new Error("the upload has ended");
    return (file ??= open(options.path, "r"));
  };

  /** Bytes of the local file; a problem with it is final (UploadFailed), as no retry can help. */
  async function readAt(offset: number, length: number): Promise<Buffer> {
    // A fresh buffer per chunk: the transport may still hold the previous one.
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    try {
      const handle = await fileHandle();
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
    } catch (error) {
      throw new UploadFailed(`cannot read ${options.path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (filled < length) throw new UploadFailed(`${options.path} is shorter than the ${offset + length} bytes announced`);
    return buffer;
  }

  /** Feeds the hash the part of [offset, offset + data.length) it has not seen. */
  function hashChunk(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    if (end <= hashed || offset > hashed) return;
    hash.update(data.subarray(hashed - offset));
    hashed = end;
  }

  /** Hashes file bytes up to `offset` without sending them (the service already has them). */
  async function hashUpTo(offset: number): Promise<void> {
    while (hashed < offset) {
      const length = Math.min(chunkBytes, offset - hashed);
      hashChunk(hashed, await readAt(hashed, length));
    }
  }

  const request = (message: MessageInitShape<typeof UploadRequestSchema>["message"]) => create(UploadRequestSchema, { message });

  /** One stream, from `from` to the finish once the upload is sealed. */
  async function streamFrom(from: number, stopped: AbortSignal): Promise<Artifact> {
    if (from > available) {
      throw new UploadFailed(`the artifact service reports ${from} bytes committed, but only ${available} exist; the upload cannot continue`, Code.DataLoss);
    }
    await hashUpTo(from);
    streams += 1;
    // Ends this stream's request generator when the call settles, however it settles.
    const ended = new AbortController();
    const signal = AbortSignal.any([stopped, ended.signal]);
    let local: UploadFailed | undefined;
    async function* requests(): AsyncGenerator<UploadRequest> {
      yield request({ case: "header", value: { uploadId, runId: options.runId, name: options.name, contentType: options.contentType ?? "" } });
      let offset = from;
      for (;;) {
        while (offset < available && !signal.aborted) {
          let data: Buffer;
          try {
            data = await readAt(offset, Math.min(chunkBytes, available - offset));
          } catch (error) {
            // Final, whatever status the transport makes of an error thrown in its request stream.
            throw (local = error as UploadFailed);
          }
          if (signal.aborted) return;
          hashChunk(offset, data);
          yield request({ case: "chunk", value: { offset: BigInt(offset), data } });
          offset += data.length;
          bytesSent += data.length;
        }
        if (signal.aborted) return;
        if (sealed !== undefined && offset === sealed) {
          digest ??= hash.digest("hex");
          yield request({ case: "finish", value: { sha256: digest, size: BigInt(sealed) } });
          return;
        }
        await more.wait(signal);
      }
    }
    try {
      const response = await client.upload(requests(), { signal });
      committed = Math.max(committed, Number(response.committedOffset));
      if (!response.artifact?.complete) throw new Error(`the upload stream ended at ${response.committedOffset} bytes without the artifact being stored`);
      return response.artifact;
    } catch (error) {
      throw local ?? error;
    } finally {
      ended.abort();
    }
  }

  /** One try: where to start (the committed offset, after the first stream), then a stream. */
  async function attempt(signal: AbortSignal): Promise<Artifact> {
    let from = 0;
    if (streams > 0) {
      try {
        const status = await client.queryUpload({ uploadId }, { signal });
        if (status.finished && status.artifact) return status.artifact;
        from = Number(status.committedOffset);
        committed = Math.max(committed, from);
      } catch (error) {
        // The header of the first stream never reached the database: start over from 0.
        if (ConnectError.from(error).code !== Code.NotFound) throw error;
      }
    }
    return streamFrom(from, signal);
  }

  const result = pRetry(() => attempt(stop.signal), {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: minDelayMs,
    maxTimeout: maxDelayMs,
    factor: 2,
    randomize: true,
    signal: stop.signal,
    shouldRetry: ({ error }) => transient(error),
    onFailedAttempt: ({ error, attemptNumber, retryDelay }) => {
      lastError = error;
      log.debug({ err: error, attemptNumber, retryDelay, committed }, "artifact upload interrupted");
    },
  }).then(
    (artifact) => verified(artifact),
    (error: unknown) => {
      throw failure(stop.signal.aborted ? stop.signal.reason : error);
    },
  );
  result.catch(() => {}); // observed through finish()
  result.finally(() => {
    stop.signal.removeEventListener("abort", onStop);
    closed = true;
    void file?.then((handle) => handle.close()).catch(() => {});
  }).catch(() => {});

  function verified(artifact: Artifact): UploadedArtifact {
    const size = Number(artifact.size);
    if (artifact.sha256 !== digest || size !== sealed) {
      throw new UploadFailed(`the artifact service stored ${size} bytes with sha256 ${artifact.sha256 || "(none)"}, but ${sealed} bytes with sha256 ${digest} were sent`, Code.DataLoss);
    }
    committed = size;
    return { name: options.name, size, sha256: artifact.sha256 };
  }

  function failure(error: unknown): UploadFailed {
    if (error instanceof UploadFailed) {
      const last = lastError === undefined || lastError === error ? "" : `; last error: ${describe(lastError)}`;
      return new UploadFailed(`${error.message}${last}`, error.code ?? codeOf(lastError));
    }
    return new UploadFailed(describe(error), codeOf(error));
  }

  return {
    uploadId,
    /** Bytes [0, size) of the file are written and may be sent. */
    extend(size: number): void {
      if (sealed !== undefined || size <= available) return;
      available = size;
      more.notify();
    },
    /**
     * No more bytes: sends the rest and the finish with the digest. Resolves with what the
     * service stored; rejects with UploadFailed on a final refusal or when `deadlineMs` runs out
     * (the stream in flight is cancelled, so the call returns in bounded time).
     */
    finish(size: number, deadlineMs: number): Promise<UploadedArtifact> {
      if (sealed === undefined) {
        available = Math.max(available, size);
        sealed = available;
        more.notify();
      }
      const timer = setTimeout(() => stop.abort(new UploadFailed(`not stored within ${deadlineMs} ms`, Code.DeadlineExceeded)), deadlineMs);
      return result.finally(() => clearTimeout(timer));
    },
    /** Gives the upload up now. */
    abort(reason = "the upload was abandoned"): void {
      stop.abort(new UploadFailed(reason, Code.Canceled));
    },
    /** The committed offset as last reported by the service. */
    get committed(): number {
      return committed;
    },
    /** Chunk bytes handed to the transport, counting re-sent ones. */
    get bytesSent(): number {
      return bytesSent;
    },
    /** Streams opened so far. */
    get streams(): number {
      return streams;
    },
  };
}

export type ResumableUpload = ReturnType<typeof createResumableUpload>;

/** Uploads a whole file that no longer changes. */
export async function uploadFile(options: ResumableUploadOptions & { size: number; deadlineMs: number }): Promise<UploadedArtifact> {
  const upload = createResumableUpload(options);
  upload.extend(options.size);
  return upload.finish(options.size, options.deadlineMs);
}

function transient(error: unknown): boolean {
  if (error instanceof UploadFailed) return false;
  if (!(error instanceof ConnectError)) return true;
  if (TRANSIENT.has(error.code)) return true;
  // Our chunk was not at the committed offset (a stream of ours that the service saw later):
  // the next try asks where to resume.
  return error.code === Code.FailedPrecondition && error.findDetails(UploadOffsetMismatchSchema).length > 0;
}

function codeOf(error: unknown): Code | undefined {
  if (error instanceof UploadFailed) return error.code;
  return error instanceof ConnectError ? error.code : undefined;
}

function describe(error: unknown): string {
  if (error instanceof ConnectError) return `${Code[error.code]}: ${error.rawMessage}`;
  return error instanceof Error ? error.message : String(error);
}
