import { getHeapSpaceStatistics } from "node:v8";
import pg from "pg";

/**
 * Preloaded (`--import`) into a service process by the attached-streams benchmark: counts every
 * statement the process sends to PostgreSQL through node-postgres (the ORM's and the raw pools'
 * alike) and answers `{ type: "pg-count" }` over IPC with the count so far.
 */
let count = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  count += 1;
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;

process.on("message", (message: { type?: string }) => {
  if (message?.type === "pg-count") process.send?.({ type: "pg-count", count });
});

// And `{ type: "memory" }`: the process's memory use, after a full collection when `--expose-gc` allows it.
process.on("message", (message: { type?: string }) => {
  if (message?.type !== "memory") return;
  (globalThis as { gc?: () => void }).gc?.();
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, Math.round(s.space_size / 1048576)]));
  process.send?.({ type: "memory", usage: process.memoryUsage(), spaces });
});
