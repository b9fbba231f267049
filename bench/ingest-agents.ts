import { parentPort, workerData } from "node:worker_threads";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { openAttach } from "../test/support/attach-client.ts";

const BATCH = 500;

export interface IngestJob {
  runs: { runId: string; token: string }[];
  perStream: number;
}

/**
 * The agent side of the ingest benchmark, in a worker thread: agents are other processes in
 * production, so their encoding and writing must not share the control plane's thread. One
 * worker serves every job of a bench run, so that, like an agent some way into its run, its
 * code is compiled by the time it is measured. Each job answers with its seconds.
 */
const { url, payload } = workerData as { url: string; payload: string };

async function ingest({ runs, perStream }: IngestJob): Promise<number> {
  const streams = runs.map((run) => {
    const stream = openAttach(url);
    stream.hello(run.runId, 1, run.token, { protocolMin: 1, protocolMax: 2 });
    return stream;
  });
  await Promise.all(streams.map((s) => s.next("welcome", 0, 60_000)));
  const started = performance.now();
  await Promise.all(
    streams.map(async (stream) => {
      // As the agent does on protocol 2: what is ready goes out in batches of up to 500 events.
      for (let first = 1; first <= perStream; first += BATCH) {
        const events = [];
        for (let i = first; i < Math.min(first + BATCH, perStream + 1); i++) {
          events.push({ sequence: BigInt(i), time: timestampNow(), payload: { case: "progress" as const, value: { message: payload } } });
        }
        stream.send({ case: "eventBatch", value: { events } });
      }
      await stream.acked(BigInt(perStream), 600_000);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const stream of streams) stream.abort();
  return seconds;
}

parentPort!.on("message", (job: IngestJob) => {
  ingest(job).then(
    (seconds) => parentPort!.postMessage({ seconds }),
    (error: unknown) => parentPort!.postMessage({ error: String(error) }),
  );
});
