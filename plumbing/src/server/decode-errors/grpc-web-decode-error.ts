import { Code } from "@connectrpc/connect";
import { isUndecodable } from "./undecodable.ts";

const TRAILERS_FLAG = 0x80;

/**
 * gRPC-Web carries the status in a trailers frame at the end of the body. An undecodable request
 * is answered before any message, so its whole response is that one frame, in the first chunk:
 * there grpc-status 13 with connect's decode message becomes 3 (INVALID_ARGUMENT). Any other
 * chunk is passed on as it came.
 */
export function rewriteGrpcWebDecodeError(chunk: Uint8Array): Uint8Array {
  if (chunk.byteLength < 5 || (chunk[0]! & TRAILERS_FLAG) === 0) return chunk;
  const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (view.readUInt32BE(1) !== chunk.byteLength - 5) return chunk;
  const lines = view.subarray(5).toString("latin1").split("\r\n");
  const value = (name: string) => lines.find((line) => line.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
  if (value("grpc-status") !== String(Code.Internal) || !isUndecodable(decodeURIComponent(value("grpc-message") ?? ""))) return chunk;
  const rewritten = Buffer.from(
    lines.map((line) => (line.toLowerCase().startsWith("grpc-status:") ? `grpc-status: ${Code.InvalidArgument}` : line)).join("\r\n"),
    "latin1",
  );
  const head = Buffer.alloc(5);
  head[0] = chunk[0]!;
  head.writeUInt32BE(rewritten.byteLength, 1);
  return Buffer.concat([head, rewritten]);
}
