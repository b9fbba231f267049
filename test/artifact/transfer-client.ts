// A client process for big transfers, so that the process hosting the service measures the
// service alone. (Besides, @connectrpc/connect 2.3.0's client keeps every message of a server
// stream reachable until the stream ends: runStreamingCall races each read against one
// long-lived promise. A 200 MiB download costs its client 200 MiB; that is the client's bug.)
//
// Usage: node transfer-client.ts <url> <token> upload <runId> <name> <bytes>
//        node transfer-client.ts <url> <token> download <runId> <name>
// Prints {"sha256", "bytes", "ms"} as JSON.
import { createHash, randomFillSync, randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { ArtifactService, UploadRequestSchema, type UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";

const [url, token, mode, runId, name, size] = process.argv.slice(2);
const client = createClient(ArtifactService, createGrpcTransport({ baseUrl: url! }));
const headers = { authorization: `Bearer ${token}` };
const CHUNK = 1024 * 1024;
const hash = createHash("sha256");
let bytes = 0;
const started = performance.now();

if (mode === "upload") {
  const total = Number(size);
  // One random block, varied per chunk: content generation must not dominate what is measured.
  const block = randomFillSync(Buffer.allocUnsafe(CHUNK));
  async function* requests(): AsyncGenerator<UploadRequest> {
    yield create(UploadRequestSchema, { message: { case: "header", value: { uploadId: randomUUID(), runId: runId!, name: name! } } });
    for (let offset = 0, i = 0; offset < total; offset += CHUNK, i++) {
      const data = Buffer.from(block.subarray(0, Math.min(CHUNK, total - offset)));
      data.writeUInt32BE(i, 0);
      hash.update(data);
      bytes += data.length;
      yield create(UploadRequestSchema, { message: { case: "chunk", value: { offset: BigInt(offset), data } } });
    }
    yield create(UploadRequestSchema, { message: { case: "finish", value: { sha256: hash.copy().digest("hex"), size: BigInt(total) } } });
  }
  await client.upload(requests(), { headers });
} else {
  for await (const message of client.download({ runId: runId!, name: name! }, { headers })) {
    hash.update(message.data);
    bytes += message.data.byteLength;
  }
}
process.stdout.write(JSON.stringify({ sha256: hash.digest("hex"), bytes, ms: performance.now() - started }));
