import { openAttach } from "../test/support/attach-client.ts";

/**
 * The agent side of the attached-streams benchmark, in its own process (forked with IPC): it
 * holds the streams it is given, each with its own HTTP/2 connection as separate agents have,
 * attached and idle, heartbeating at the interval the welcome names. It says how many are
 * attached, and stops when told.
 */
interface Job {
  url: string;
  runs: { runId: string; token: string }[];
}

const streams: ReturnType<typeof openAttach>[] = [];
const timers: NodeJS.Timeout[] = [];

async function attach({ url, runs }: Job): Promise<number> {
  // A few at a time, as agents starting over a while would: a burst of thousands of TLS-less
  // connections is not what this measures.
  for (let first = 0; first < runs.length; first += 50) {
    await Promise.all(
      runs.slice(first, first + 50).map(async (run) => {
        const stream = openAttach(url);
        stream.hello(run.runId, 1, run.token, { protocolMin: 1, protocolMax: 2 });
        const welcome = await stream.next("welcome", 0, 120_000);
        streams.push(stream);
        const intervalMs = Number(welcome.heartbeatInterval?.seconds ?? 5n) * 1000 + Math.floor((welcome.heartbeatInterval?.nanos ?? 0) / 1e6);
        // Spread over the interval, as independent agents are.
        const start = setTimeout(() => {
          stream.send({ case: "heartbeat", value: { leaseEpoch: welcome.leaseEpoch } });
          timers.push(setInterval(() => stream.send({ case: "heartbeat", value: { leaseEpoch: welcome.leaseEpoch } }), intervalMs));
        }, Math.random() * intervalMs);
        timers.push(start);
      }),
    );
  }
  return streams.length;
}

process.on("message", (message: { type: "attach"; job: Job } | { type: "stop" }) => {
  if (message.type === "attach") {
    attach(message.job).then(
      (attached) => process.send!({ type: "attached", attached }),
      (error: unknown) => process.send!({ type: "error", error: String(error) }),
    );
  } else {
    for (const timer of timers) clearTimeout(timer);
    for (const stream of streams) stream.abort();
    setTimeout(() => process.exit(0), 200);
  }
});
process.send!({ type: "ready" });
