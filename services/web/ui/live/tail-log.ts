import { Code, type Client } from "@connectrpc/connect";
import type { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { backoffMs, codeOf, sleep } from "../errors.ts";

export type TailState =
  | { state: "waiting" }
  | { state: "live" }
  | { state: "reconnecting"; error: unknown; failures: number }
  | { state: "finished" }
  | { state: "failed"; error: unknown };

export interface TailLogOptions {
  runId: string;
  /** Artifact name, such as attempts/1/run.log. */
  name: string;
  /** Byte offset to continue from. */
  offset?: number;
  signal: AbortSignal;
  onData(data: Uint8Array, offset: number): void;
  onState?(state: TailState): void;
  /** Bytes one Download call may carry (connect-es #1524 keeps a stream's messages until it ends). */
  windowBytes?: number;
  /** How often to look again for a log that does not exist yet. */
  pollMs?: number;
}

/**
 * Follows a run log as the agent writes it: Download with follow, from the last byte received,
 * in windows. Waits for a log that is not there yet; resumes after a broken stream. Resolves
 * with the offset reached once the log is finished, or when the signal ends the tail (the run
 * ended and its log never will be finished, or the page moved on).
 */
export async function tailLog(client: Client<typeof ArtifactService>, options: TailLogOptions): Promise<number> {
  const { signal } = options;
  const windowBytes = options.windowBytes ?? 1024 * 1024;
  let offset = options.offset ?? 0;
  let failures = 0;
  let announced = false;
  while (!signal.aborted) {
    try {
      let received = 0;
      for await (const message of client.download({ runId: options.runId, name: options.name, offset: BigInt(offset), limit: BigInt(windowBytes), follow: true }, { signal })) {
        if (!announced || failures > 0) options.onState?.({ state: "live" });
        announced = true;
        failures = 0;
        if (message.data.byteLength === 0) continue;
        options.onData(message.data, offset);
        offset += message.data.byteLength;
        received += message.data.byteLength;
      }
      // A following call ends early only at the finished log's end.
      if (received < windowBytes) {
        options.onState?.({ state: "finished" });
        return offset;
      }
    } catch (error) {
      if (signal.aborted) break;
      const code = codeOf(error);
      if (code === Code.NotFound) {
        // The agent opens the log when its attempt starts.
        if (!announced) options.onState?.({ state: "waiting" });
        await sleep(options.pollMs ?? 1000, signal);
        continue;
      }
      if (code === Code.Unauthenticated || code === Code.InvalidArgument || code === Code.PermissionDenied) {
        options.onState?.({ state: "failed", error });
        return offset;
      }
      failures++;
      options.onState?.({ state: "reconnecting", error, failures });
      await sleep(backoffMs(failures), signal);
    }
  }
  return offset;
}
