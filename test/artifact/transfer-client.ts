// A client process for big transfers, so that the process hosting the service measures the
// service alone. (Besides, @connectrpc/connect 2.3.0's client keeps every message of a server
// stream reachable until the stream ends: runStreamingCall races each read against one
// long-lived promise. A 200 MiB download costs its client 200 MiB; that is the client's bug,
// connect-es #1524. The file modes read in windows as the CLI does, so they do not.)
//
// Usage: node transfer-client.ts <url> <token> upload <runId> <name> <bytes>
//        node transfer-client.ts <url> <token> download <runId> <name>
//        node transfer-client.ts <url> <token> upload-file <runId> <name> <path> <uploadId> [<kill after bytes>]
//        node transfer-client.ts <url> <token> resume-file <runId> <name> <path> <uploadId>
//        node transfer-client.ts <url> <token> download-file <runId> <name> <path>
// Prints {"sha256", "bytes", "ms"} as JSON; resume-file adds "committed" (the offset it resumed
// from) and "sent" (the bytes it sent). upload-file with a kill offset SIGKILLs itself once it
// has handed that many bytes to the stream: an agent that dies mid-upload.
import { createHash, randomFillSync, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { ArtifactService, UploadRequestSchema, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { UploadOffsetMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { readArtifact } from "../../cli/src/artifacts/read-artifact.ts";

const [url, token, mode, runId, name, ...rest] = process.argv.slice(2);
const client = createClient(ArtifactService, createGrpcTransport({ baseUrl: url! }));
const headers = { authorization: `Bearer ${token}` };
const CHUNK = 1024 * 1024;
const hash = createHash("sha256");
let bytes = 0;
const started = performance.now();
const result: Record<string, unknown> = {};

const message = (value: UploadRequest["message"]) => create(UploadRequestSchema, { message: value } as never);

/** The file's bytes from `from`, in 1 MiB chunks (fresh buffers: the stream may still hold the last one). */
async function* fileChunks(path: string, from: number): AsyncGenerator<Buffer> {
  for await (const data of createReadStream(path, { start: from, highWaterMark: CHUNK })) yield data as Buffer;
}

if (mode === "upload") {
  const total = Number(rest[0]);
  // One random block, varied per chunk: content generation must not dominate what is measured.
  const block = randomFillSync(Buffer.allocUnsafe(CHUNK));
  async function* requests(): AsyncGenerator<UploadRequest> {
    yield message({ case: "header", value: { uploadId: randomUUID(), runId: runId!, name: name! } as never });
    for (let offset = 0, i = 0; offset < total; offset += CHUNK, i++) {
      const data = Buffer.from(block.subarray(0, Math.min(CHUNK, total - offset)));
      data.writeUInt32BE(i, 0);
      hash.update(data);
      bytes += data.length;
      yield message({ case: "chunk", value: { offset: BigInt(offset), data } as never });
    }
    yield message({ case: "finish", value: { sha256: hash.copy().digest("hex"), size: BigInt(total) } as never });
  }
  await client.upload(requests(), { headers });
} else if (mode === "download") {
  for await (const piece of client.download({ runId: runId!, name: name! }, { headers })) {
    hash.update(piece.data);
    bytes += piece.data.byteLength;
  }
} else if (mode === "upload-file" || mode === "resume-file") {
  const [path, uploadId, killAfter] = rest;
  const size = (await stat(path!)).size;
  let from = 0;
  if (mode === "resume-file") {
    // The interrupted stream's last commit may still be on its way: wait until the offset settles.
    let previous = -1;
    for (;;) {
      const { committedOffset } = await client.queryUpload({ uploadId: uploadId! }, { headers });
      from = Number(committedOffset);
      if (from === previous) break;
      previous = from;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    result.committed = from;
  }
  // Hashed on the way, as the agent's uploader does: bytes the service has are read for the
  // hash only, and a retry from a later offset hashes the gap first.
  const whole = createHash("sha256");
  let hashed = 0;
  const hashUpTo = async (offset: number) => {
    if (hashed >= offset) return;
    for await (const data of createReadStream(path!, { start: hashed, end: offset - 1, highWaterMark: CHUNK })) whole.update(data as Buffer);
    hashed = offset;
  };
  let sent = 0;
  let digest: string | undefined;
  for (let attempt = 0; ; attempt++) {
    async function* requests(): AsyncGenerator<UploadRequest> {
      yield message({ case: "header", value: { uploadId: uploadId!, runId: runId!, name: name! } as never });
      await hashUpTo(from);
      let offset = from;
      for await (const data of fileChunks(path!, from)) {
        if (offset <= hashed && offset + data.length > hashed) {
          whole.update(data.subarray(hashed - offset));
          hashed = offset + data.length;
        }
        yield message({ case: "chunk", value: { offset: BigInt(offset), data } as never });
        offset += data.length;
        sent += data.length;
        if (killAfter !== undefined && sent >= Number(killAfter)) process.kill(process.pid, "SIGKILL");
      }
      yield message({ case: "finish", value: { sha256: (digest ??= whole.digest("hex")), size: BigInt(size) } as never });
    }
    try {
      await client.upload(requests(), { headers });
      break;
    } catch (error) {
      // The server had committed more than it said a moment ago: go on from there (counted as sent).
      const mismatch = ConnectError.from(error).findDetails(UploadOffsetMismatchSchema)[0];
      if (ConnectError.from(error).code !== Code.FailedPrecondition || !mismatch || attempt > 2) throw error;
      from = Number(mismatch.committedOffset);
    }
  }
  result.sent = sent;
  bytes = size;
  result.sha256 = digest;
} else if (mode === "download-file") {
  const file = await open(rest[0]!, "w");
  for await (const piece of readArtifact(client, { runId: runId!, name: name! }, { headers })) {
    if (!piece.data) continue;
    hash.update(piece.data);
    bytes += piece.data.byteLength;
    for (let written = 0; written < piece.data.byteLength; ) written += (await file.write(piece.data, written)).bytesWritten;
  }
  await file.sync();
  await file.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.stdout.write(JSON.stringify({ sha256: hash.digest("hex"), bytes, ms: performance.now() - started, ...result }));
