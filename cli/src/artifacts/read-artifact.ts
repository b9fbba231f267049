import type { Client } from "@connectrpc/connect";
import type { Artifact, ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";

/** Most bytes one Download call asks for. */
export const WINDOW_BYTES = 8 * 1024 * 1024;

export type ArtifactRead = { artifact: Artifact; data?: undefined } | { artifact?: undefined; data: Uint8Array };

/**
 * Reads an artifact through ArtifactService.Download, from `offset` to its end — with `follow`,
 * to the end of an upload still in progress, waiting for its bytes as they are committed.
 * Yields the artifact (as the first Download call saw it) first, then its bytes in order.
 *
 * Why windows: @connectrpc/connect 2.3.0's client keeps every message of a server stream
 * reachable until the stream ends (connect-es issue #1524: runStreamingCall races each read
 * against one long-lived promise), so one Download of a 1 GiB artifact, or following a log for
 * hours, would grow the CLI by every byte it received. Each call here asks for at most
 * `windowBytes` (offset/limit), and the next call continues where it ended, so the CLI holds at
 * most one window, whatever the size. A call that returns less than its window has reached the
 * end: of what is committed (without follow) or of the finished upload (with follow; the server
 * ends a following call only then, or at the window's end).
 */
export async function* readArtifact(
  client: Client<typeof ArtifactService>,
  request: { runId: string; name: string; offset?: number; follow?: boolean; windowBytes?: number },
  options: { headers: Record<string, string>; signal?: AbortSignal },
): AsyncGenerator<ArtifactRead> {
  const window = request.windowBytes ?? WINDOW_BYTES;
  let position = request.offset ?? 0;
  let first = true;
  for (;;) {
    let received = 0;
    const call = client.download(
      { runId: request.runId, name: request.name, offset: BigInt(position), limit: BigInt(window), follow: request.follow ?? false },
      { headers: options.headers, signal: options.signal },
    );
    for await (const message of call) {
      if (first && message.artifact) {
        first = false;
        yield { artifact: message.artifact };
      }
      if (message.data.byteLength > 0) {
        received += message.data.byteLength;
        position += message.data.byteLength;
        yield { data: message.data };
      }
    }
    if (received < window) return;
  }
}
