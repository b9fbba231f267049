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
