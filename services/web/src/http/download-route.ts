import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { basename } from "node:path";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";

/** Path of the route; `run` and `name` are query parameters. */
export const DOWNLOAD_PATH = "/download";

/**
 * Why windows: @connectrpc/connect 2.3.0's client keeps every message of a server stream until
 * the stream ends (connect-es #1524), so one Download of a 1 GiB artifact would hold it all in
 * this process. Each call reads at most this much; the next continues where it ended.
 */
const WINDOW_BYTES = 8 * 1024 * 1024;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface DownloadRouteOptions {
  client: Client<typeof ArtifactService>;
  /** The service token header, or undefined when the dashboard has none. */
  headers: Record<string, string> | undefined;
  logger: Logger;
}

/**
 * GET /download?run=RUN_ID&name=NAME: one artifact as a file to save, streamed from
 * ArtifactService.Download (the contract's own read; browsers save a plain GET, not a Connect
 * stream). Always an attachment of type application/octet-stream with nosniff: an artifact is
 * whatever a run produced, and must never render as a page of the dashboard's origin.
 */
export function createDownloadRoute({ client, headers, logger }: DownloadRouteOptions) {
  return async function download(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const runId = url.searchParams.get("run") ?? "";
    const name = url.searchParams.get("name") ?? "";
    if (req.method !== "GET" && req.method !== "HEAD") return plain(res, 405, "use GET", { allow: "GET, HEAD" });
    if (!UUID.test(runId)) return plain(res, 400, "run: expected a run id (uuid)");
    if (name === "" || Buffer.byteLength(name) > 512) return plain(res, 400, "name: expected an artifact name of 1 to 512 bytes");
    if (!headers) return plain(res, 503, "the dashboard has no artifact service token (CORRAL_ARTIFACT_SERVICE_TOKEN), so it cannot read artifacts");

    const abort = new AbortController();
    res.once("close", () => abort.abort());
    let artifact;
    try {
      ({ artifact } = await client.stat({ runId, name }, { headers, signal: abort.signal }));
    } catch (error) {
      return failed(res, error, logger);
    }
    const filename = basename(name).replace(/["\\\r\n]/g, "_");
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-disposition": `attachment; filename="${filename.replace(/[^\x20-\x7e]/g, "_")}"; filename*=UTF-8''${encodeURIComponent(filename)}`,
      "x-content-type-options": "nosniff",
      "cache-control": "no-store",
      // A finished artifact's size is known; an unfinished one is read as far as it is committed.
      ...(artifact?.complete ? { "content-length": String(artifact.size) } : {}),
      ...(artifact?.sha256 ? { "x-corral-sha256": artifact.sha256 } : {}),
    });
    if (req.method === "HEAD") return void res.end();
    try {
      for (let offset = 0n; ; ) {
        let received = 0;
        for await (const message of client.download({ runId, name, offset, limit: BigInt(WINDOW_BYTES) }, { headers, signal: abort.signal })) {
          if (message.data.byteLength === 0) continue;
          received += message.data.byteLength;
          offset += BigInt(message.data.byteLength);
          if (!res.write(message.data)) await once(res, "drain", { signal: abort.signal });
        }
        if (received < WINDOW_BYTES) break;
      }
      res.end();
    } catch (error) {
      // Headers are sent: all that is left is to break the transfer, so the browser reports a failed download.
      if (!abort.signal.aborted) logger.warn({ err: error, runId, name }, "artifact download broke off");
      res.destroy();
    }
  };
}

/** An upstream error as a status a browser shows; the message is the artifact service's own. */
function failed(res: ServerResponse, error: unknown, logger: Logger): void {
  if (!(error instanceof ConnectError)) {
    logger.error({ err: error }, "artifact download failed");
    return plain(res, 500, "internal error");
  }
  const status: Partial<Record<Code, number>> = {
    [Code.NotFound]: 404,
    [Code.InvalidArgument]: 400,
    [Code.Unavailable]: 503,
    [Code.Canceled]: 499,
    [Code.DeadlineExceeded]: 504,
  };
  // UNAUTHENTICATED means the dashboard's own token was refused: a configuration problem, not the browser's.
  const text = error.code === Code.Unauthenticated ? "the artifact service refused the dashboard's service token" : error.rawMessage;
  plain(res, status[error.code] ?? 502, `${Code[error.code]}: ${text}`);
}

function plain(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff", "cache-control": "no-store", ...headers });
  res.end(`${text}\n`);
}
