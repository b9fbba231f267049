import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { isUndecodable } from "./undecodable.ts";

const MAX_ERROR_BODY = 64 * 1024;

/**
 * A Connect unary error is the HTTP status and a small JSON body, both sent before any
 * interceptor: an undecodable binary request (application/proto) is rewritten to 400 and
 * invalid_argument. A body too big to be connect's own error is passed on as it came.
 */
export async function connectUnaryDecodeError(response: UniversalServerResponse, body: AsyncIterable<Uint8Array>): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size > MAX_ERROR_BODY) break;
  }
  const bytes = Buffer.concat(chunks);
  const unchanged = { ...response, body: once(bytes) };
  if (size > MAX_ERROR_BODY) return unchanged;
  let error: { code?: unknown; message?: unknown };
  try {
    error = JSON.parse(bytes.toString("utf8")) as typeof error;
  } catch {
    return unchanged;
  }
  if (error.code !== "internal" || typeof error.message !== "string" || !isUndecodable(error.message)) return unchanged;
  const rewritten = Buffer.from(JSON.stringify({ ...error, code: "invalid_argument" }));
  const header = new Headers(response.header);
  header.set("content-length", String(rewritten.byteLength));
  return { ...response, status: 400, header, body: once(rewritten) };
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
