import { Code } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

// connect-es answers a request body it cannot decode with INTERNAL, before any interceptor sees
// it (a unary request is parsed ahead of the interceptor chain). These are its messages for that.
const UNDECODABLE = [/^parse binary: /, /^received compressed envelope, but do not know how to decompress/];

/**
 * Wraps a route so that a gRPC or Connect unary request body which is not a valid message (not
 * protobuf, or a compressed flag without an encoding) is answered INVALID_ARGUMENT: bad input is the client's
 * error, and INTERNAL is kept for faults of the server. The status is in the trailers, which
 * connect fills in while the body is read, so it is rewritten once the body is done.
 */
export function preciseDecodeErrors(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (...args: Parameters<UniversalHandler>) => {
    const response = await handler(...args);
    const { body, trailer } = response;
    if (response.status === 500 && body && response.header?.get("content-type")?.startsWith("application/json")) return connectUnaryError(response, body);
    if (!body || !trailer) return response;
    return {
      ...response,
      body: afterEnd(body, () => {
        if (trailer.get("grpc-status") !== String(Code.Internal)) return;
        const message = decodeURIComponent(trailer.get("grpc-message") ?? "");
        if (UNDECODABLE.some((pattern) => pattern.test(message))) trailer.set("grpc-status", String(Code.InvalidArgument));
      }),
    };
  };
  return Object.assign(wrapped, handler);
}

/**
 * A Connect unary error is the HTTP status and a small JSON body, both sent before any
 * interceptor: an undecodable binary request (application/proto) is rewritten to 400 and
 * invalid_argument. A body too big to be connect's own error is passed on as it came.
 */
async function connectUnaryError(response: UniversalServerResponse, body: AsyncIterable<Uint8Array>): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size > 64 * 1024) break;
  }
  const bytes = Buffer.concat(chunks);
  const unchanged = { ...response, body: once(bytes) };
  if (size > 64 * 1024) return unchanged;
  let error: { code?: unknown; message?: unknown };
  try {
    error = JSON.parse(bytes.toString("utf8")) as typeof error;
  } catch {
    return unchanged;
  }
  if (error.code !== "internal" || typeof error.message !== "string" || !UNDECODABLE.some((pattern) => pattern.test(error.message as string))) return unchanged;
  const rewritten = Buffer.from(JSON.stringify({ ...error, code: "invalid_argument" }));
  const header = new Headers(response.header);
  header.set("content-length", String(rewritten.byteLength));
  return { ...response, status: 400, header, body: once(rewritten) };
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * The body, calling `ended` when it has been read to its end (not when it throws or is
 * abandoned). A plain iterator, not an async generator around `yield*`: long-lived streams sit
 * idle by the thousand (attached agents), and each suspended generator layer holds its own
 * request queue and promises.
 */
function afterEnd<T>(body: AsyncIterable<T>, ended: () => void): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const iterator = body[Symbol.asyncIterator]();
      let done = false;
      return {
        async next() {
          const step = await iterator.next();
          if (step.done && !done) {
            done = true;
            ended();
          }
          return step;
        },
        return: (value?: unknown) => (iterator.return ? iterator.return(value) : Promise.resolve({ done: true as const, value: value as never })),
        throw: (error?: unknown) => (iterator.throw ? iterator.throw(error) : Promise.reject(error)),
      };
    },
  };
}
