import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

const CLIENT = fileURLToPath(new URL("./transfer-client.ts", import.meta.url));

export interface TransferResult {
  sha256: string;
  bytes: number;
  /** Wall time inside the client, from its first request to the last byte. */
  ms: number;
  /** resume-file: the committed offset it resumed from, and the bytes it sent. */
  committed?: number;
  sent?: number;
}

export type TransferRequest =
  | { mode: "upload"; runId: string; name: string; size: number }
  | { mode: "download"; runId: string; name: string }
  /** Uploads a file; with killAfter, the client SIGKILLs itself once it has sent that many bytes. */
  | { mode: "upload-file"; runId: string; name: string; path: string; uploadId: string; killAfter?: number }
  /** Resumes an upload of a file from the offset the service committed, sending only the rest. */
  | { mode: "resume-file"; runId: string; name: string; path: string; uploadId: string }
  /** Downloads to a file (windowed, as the CLI does), synced. */
  | { mode: "download-file"; runId: string; name: string; path: string };

/** Runs one transfer in a separate client process; rejects when the client fails (or was killed). */
export function transfer(url: string, token: string, request: TransferRequest): Promise<TransferResult> {
  const extra =
    request.mode === "upload"
      ? [String(request.size)]
      : request.mode === "upload-file"
        ? [request.path, request.uploadId, ...(request.killAfter === undefined ? [] : [String(request.killAfter)])]
        : request.mode === "resume-file"
          ? [request.path, request.uploadId]
          : request.mode === "download-file"
            ? [request.path]
            : [];
  const args = [CLIENT, url, token, request.mode, request.runId, request.name, ...extra];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { maxBuffer: 1024 * 1024, timeout: 600_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`transfer client failed: ${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as TransferResult);
    });
  });
}
