import { Code } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";

// connect-es answers a request body it cannot decode with INTERNAL, before any interceptor sees
// it (a unary request is parsed ahead of the interceptor chain). These are its messages for that.
const UNDECODABLE = [/^parse binary: /, /^received compressed envelope, but do not know how to decompress/];

/**
 * Wraps a route so that a gRPC request body which is not a valid message (not protobuf, or a
 * compressed flag without an encoding) is answered INVALID_ARGUMENT: bad input is the client's
 * error, and INTERNAL is kept for faults of the server. The status is in the trailers, which
 * connect fills in while the body is read, so it is rewritten once the body is done.
 */
export function preciseDecodeErrors(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (...args: Parameters<UniversalHandler>) => {
    const response = await handler(...args);
    const { body, trailer } = response;
    if (!body || !trailer) return response;
    return {
      ...response,
      body: (async function* () {
        yield* body;
        if (trailer.get("grpc-status") !== String(Code.Internal)) return;
        const message = decodeURIComponent(trailer.get("grpc-message") ?? "");
        if (UNDECODABLE.some((pattern) => pattern.test(message))) trailer.set("grpc-status", String(Code.InvalidArgument));
      })(),
    };
  };
  return Object.assign(wrapped, handler);
}
