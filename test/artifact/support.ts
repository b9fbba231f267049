import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ArtifactService,
  UploadRequestSchema,
  type DownloadRequestSchema,
  type DownloadResponse,
  type UploadRequest,
} from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { startArtifact, type ArtifactServer } from "@corral/artifact/start-artifact.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

export const SERVICE_TOKEN = "svc-token-for-tests-0123456789abcdefghij";
export const MiB = 1024 * 1024;

export type ArtifactClient = Client<typeof ArtifactService>;

export interface ArtifactFixture {
  database: TestDatabase;
  server: ArtifactServer;
  sql: Sql;
  url: string;
  /** The blob store's root, inside `sandbox`. */
  storeDir: string;
  /** A temp directory holding the store and nothing else the service may write to. */
  sandbox: string;
  client: ArtifactClient;
  /** Stops the server; drops the database and the directory unless they were shared. */
  close(): Promise<void>;
}

const logger = () => createLogger({ name: "artifact", level: process.env.TEST_LOG_LEVEL ?? "silent" });

/**
 * A real artifact service on a free port, with its own database and a fresh store directory; or,
 * given `shared`, another replica on an existing fixture's database and directory.
 */
export async function startArtifactFixture(env: Record<string, string> = {}, shared?: { database: TestDatabase; sandbox: string }): Promise<ArtifactFixture> {
  const database = shared?.database ?? (await createTestDatabase());
  const sandbox = shared?.sandbox ?? (await mkdtemp(join(tmpdir(), "corral-artifact-test-")));
  const storeDir = join(sandbox, "store");
  const config = loadConfig(artifactConfig, {
    DATABASE_URL: database.url,
    CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
    CORRAL_ARTIFACT_DIR: storeDir,
    CORRAL_ARTIFACT_SERVICE_TOKEN: SERVICE_TOKEN,
    ...env,
  });
  const server = await startArtifact(config, logger());
  const url = server.server.url;
  return {
    database,
    server,
    sql: createSql(server.database.orm),
    url,
    storeDir,
    sandbox,
    client: createClient(ArtifactService, createGrpcTransport({ baseUrl: url })),
    async close() {
      await server.close(1000);
      if (!shared) {
        await database.drop();
        await rm(sandbox, { recursive: true, force: true });
      }
    },
  };
}

export const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

export const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** Deterministic bytes, different for every seed. */
export function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

type Message = UploadRequest["message"];

export const header = (value: { uploadId?: string; runId: string; name: string; contentType?: string }): Message => ({
  case: "header",
  value: { uploadId: value.uploadId ?? randomUUID(), runId: value.runId, name: value.name, contentType: value.contentType ?? "" } as never,
});
export const chunk = (offset: number, data: Uint8Array): Message => ({ case: "chunk", value: { offset: BigInt(offset), data } as never });
export const finish = (digest: string, size: number): Message => ({ case: "finish", value: { sha256: digest, size: BigInt(size) } as never });

/** Request messages from plain ones. */
export async function* stream(messages: Iterable<Message> | AsyncIterable<Message>): AsyncGenerator<UploadRequest> {
  for await (const message of messages) yield create(UploadRequestSchema, { message } as MessageInitShape<typeof UploadRequestSchema>);
}

/** Header, `data` in chunks of `chunkSize` from `from`, finish with the right digest (unless given). */
export function* wholeUpload(
  target: { uploadId?: string; runId: string; name: string; contentType?: string },
  data: Buffer,
  options: { chunkSize?: number; from?: number; sha256?: string; size?: number } = {},
): Generator<Message> {
  const chunkSize = options.chunkSize ?? 256 * 1024;
  yield header(target);
  for (let offset = options.from ?? 0; offset < data.length; offset += chunkSize) yield chunk(offset, data.subarray(offset, offset + chunkSize));
  yield finish(options.sha256 ?? sha256(data), options.size ?? data.length);
}

export function upload(client: ArtifactClient, token: string, messages: Iterable<Message> | AsyncIterable<Message>, signal?: AbortSignal) {
  return client.upload(stream(messages), { ...auth(token), signal });
}

/** Downloads and concatenates; also returns the messages' offsets and first artifact. */
export async function download(client: ArtifactClient, token: string, request: MessageInitShape<typeof DownloadRequestSchema>, signal?: AbortSignal) {
  const parts: Buffer[] = [];
  const messages: DownloadResponse[] = [];
  for await (const message of client.download(request, { ...auth(token), signal })) {
    messages.push(message);
    parts.push(Buffer.from(message.data));
  }
  return { data: Buffer.concat(parts), messages, artifact: messages[0]?.artifact };
}

/** The call's ConnectError; fails when the call succeeds. */
export async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail("expected the call to fail");
}

export async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  const error = await failure(call);
  assert.equal(error.code, code, `expected ${Code[code]}, got ${Code[error.code]}: ${error.message}`);
  return error;
}

/** Every file under a directory, relative to it, sorted. */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(dir, join(e.parentPath, e.name)))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

export const blobFiles = (fx: ArtifactFixture) => filesUnder(join(fx.storeDir, "blobs"));
export const partialFiles = (fx: ArtifactFixture) => filesUnder(join(fx.storeDir, "uploads"));

/** Polls until `check` returns something other than undefined. */
export async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
