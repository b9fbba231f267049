import { createLogger } from "@corral/plumbing/logger.ts";
import { createLocalRuntime } from "@corral/scheduler/runtime/local-runtime.ts";

// A stand-in scheduler for tests that kill it: keeps a warm pool of two under the work root given
// as the first argument, and prints the standby agents' pids once both are ready.
const runtime = createLocalRuntime({ workRoot: process.argv[2]!, logger: createLogger({ name: "pool-host", level: "silent" }), warmAgents: 2 });
const timer = setInterval(() => {
  const ready = runtime.standbyAgents().filter((s) => s.ready);
  if (ready.length < 2) return;
  clearInterval(timer);
  process.stdout.write(`${JSON.stringify(ready.map((s) => s.pid))}\n`);
}, 20);
