import { Code } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { connectUnaryDecodeError } from "./decode-errors/connect-unary-decode-error.ts";
import { rewriteGrpcWebDecodeError } from "./decode-errors/grpc-web-decode-error.ts";
import { mapBody } from "./decode-errors/map-body.ts";
import { isUndecodable } from "./decode-errors/undecodable.ts";

const unchanged = (chunk: Uint8Array) => chunk;

/**
 * Wraps a route so that a request body which is not a valid message (not protobuf, or a
 * compressed flag without an encoding) is answered INVALID_ARGUMENT in each protocol: bad input
 * is the client's error, and INTERNAL is kept for faults of the server. connect-es decides such
 * a status before any interceptor runs, so it is rewritten on the way out: gRPC's in the
 * trailers (filled in while the body is read, so rewritten once the body is done), gRPC-Web's in
 * the trailers frame that is its whole body, Connect unary's in the HTTP status and JSON body.
 */
export function preciseDecodeErrors(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (...args: Parameters<UniversalHandler>) => {
    const response = await handler(...args);
    const { body, trailer } = response;
    if (!body) return response;
    const contentType = response.header?.get("content-type") ?? "";
    if (response.status === 500 && contentType.startsWith("application/json")) return connectUnaryDecodeError(response, body);
    if (contentType.startsWith("application/grpc-web")) {
      let first = true;
      return {
        ...response,
        body: mapBody(body, (chunk) => {
          if (!first) return chunk;
          first = false;
          return rewriteGrpcWebDecodeError(chunk);
        }),
      };
    }
    if (!trailer) return response;
    return {
      ...response,
      body: mapBody(body, unchanged, () => {
        if (trailer.get("grpc-status") !== String(Code.Internal)) return;
        if (isUndecodable(decodeURIComponent(trailer.get("grpc-message") ?? ""))) trailer.set("grpc-status", String(Code.InvalidArgument));
      }),
    };
  };
  return Object.assign(wrapped, handler);
}
