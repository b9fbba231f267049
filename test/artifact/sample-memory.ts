import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// Garbage is V8's to collect whenever it likes (a 200 MiB transfer can leave 200 MiB of dead
// buffers behind before it bothers). What must stay flat is what the service keeps alive, so the
// sampler collects garbage before each sample: a whole-file buffer anywhere would still show.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as (options?: { type: "major" | "minor"; execution: "sync" | "async" }) => void;
// A full, synchronous collection: a bare gc() may leave dead buffers counted.
const collectGarbage = () => gc({ type: "major", execution: "sync" });

export interface MemoryGrowth {
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
}

/**
 * Samples this process's live memory (after a collection) until stopped; returns the peak growth.
 * A full collection takes some 20 ms here, so sampling much more often would measure the collector.
 */
export function sampleMemory(intervalMs = 250) {
  collectGarbage();
  const start = process.memoryUsage();
  const peak = { rss: start.rss, heapUsed: start.heapUsed, arrayBuffers: start.arrayBuffers };
  const take = () => {
    collectGarbage();
    const now = process.memoryUsage();
    peak.rss = Math.max(peak.rss, now.rss);
    peak.heapUsed = Math.max(peak.heapUsed, now.heapUsed);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, now.arrayBuffers);
  };
  const timer = setInterval(take, intervalMs);
  return {
    stop(): MemoryGrowth {
      clearInterval(timer);
      take();
      return { rss: peak.rss - start.rss, heapUsed: peak.heapUsed - start.heapUsed, arrayBuffers: peak.arrayBuffers - start.arrayBuffers };
    },
  };
}
