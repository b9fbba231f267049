import { parentPort, workerData } from "node:worker_threads";
import { openAttach } from "../test/support/attach-client.ts";

/**
 * The agent side of the ingest benchmark, in a worker thread: agents are other processes in
 * production, so their encoding and writing must not share the control plane's thread.
 */
const { url, runs, perStream, payload } = workerData as { url: string; runs: { runId: string; token: string }[]; perStream: number; payload: string };
const streams = runs.map((run) => {
  const stream = openAttach(url);
  stream.hello(run.runId, 1, run.token);
  return stream;
});
await Promise.all(streams.map((s) => s.next("welcome", 0, 60_000)));
const started = performance.now();
await Promise.all(
  streams.map(async (stream) => {
    for (let i = 1n; i <= BigInt(perStream); i++) stream.event(i, { case: "progress", value: { message: payload } });
    await stream.acked(BigInt(perStream), 600_000);
  }),
);
const seconds = (performance.now() - started) / 1000;
for (const stream of streams) stream.abort();
parentPort!.postMessage({ seconds });
