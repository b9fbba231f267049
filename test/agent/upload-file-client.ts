// The agent's uploader alone in a process, so its memory is measured without the service's.
// Usage: node upload-file-client.ts <url> <credential> <runId> <name> <path> <size>
// Prints {"sha256", "size", "baselineRss", "peakRss"} as JSON (bytes; peak is VmHWM).
import { readFileSync } from "node:fs";
import { createArtifactConnection } from "../../agent/src/artifacts/artifact-client.ts";
import { uploadFile } from "../../agent/src/artifacts/resumable-upload.ts";
import { createLogger } from "@corral/plumbing/logger.ts";

const [url, credential, runId, name, path, size] = process.argv.slice(2);
const highWater = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
const baselineRss = process.memoryUsage.rss();
const connection = createArtifactConnection({ url: url!, credential: credential! });
const stored = await uploadFile({
  client: connection.client,
  runId: runId!,
  name: name!,
  path: path!,
  size: Number(size),
  deadlineMs: 120_000,
  logger: createLogger({ name: "upload", level: "silent" }),
});
connection.close();
process.stdout.write(JSON.stringify({ ...stored, baselineRss, peakRss: highWater() }));
