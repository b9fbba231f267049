import { mkdirSync, writeFileSync } from "node:fs";
import { stopSharedPostgres } from "../test/support/postgres.ts";
import { benchIngest } from "./ingest.ts";
import { benchRuns } from "./runs.ts";
import { benchArtifacts } from "./artifacts.ts";
import { benchAttached } from "./attached.ts";
import { benchAdmission } from "./admission.ts";
import { benchTracing } from "./tracing.ts";
import { printTable, type Figure } from "./stats.ts";

/**
 * `npm run bench`: Corral's performance figures, each beside a baseline measured in the same
 * run (these machines are noisy; ratios travel, absolute numbers do not). Prints a table and
 * writes bench/results/latest.json.
 */
const quick = process.argv.includes("--quick");
const figures: Figure[] = [];
try {
  console.log("bench: event ingest…");
  figures.push(...(await benchIngest({ events: quick ? 5000 : 50_000, streams: 50 })));
  console.log("bench: cancel latency and submit → attached, with real agents…");
  figures.push(...(await benchRuns({ cancels: quick ? 32 : 200, submits: quick ? 10 : 30 })));
  console.log("bench: idle attached streams held by one control-plane process, and their database statements…");
  figures.push(
    ...(await benchAttached(
      quick
        ? { streams: 200, steps: [100, 200], heartbeatMs: 1000, idleWindowMs: 5000 }
        : { streams: 2000, steps: [500, 1000, 2000], heartbeatMs: 5000, idleWindowMs: 30_000 },
    )),
  );
  if (!quick) {
    // The same with Node's defaults (no flags): V8's young generation then grows to 64 MiB per
    // semi-space during the attach bursts and stays committed; this shows what the production
    // flags (services/control-plane/src/node-flags.ts) are worth (the RSS figure only).
    const defaults = await benchAttached({ streams: 2000, steps: [2000], heartbeatMs: 5000, idleWindowMs: 1000, nodeFlags: [] });
    figures.push(defaults[0]!);
  }
  console.log("bench: runs admitted and launched per second, 1 and 3 schedulers, no-op runtime…");
  figures.push(...(await benchAdmission({ runs: quick ? 500 : 3000 })));
  console.log("bench: what tracing costs an RPC (no interceptor, tracing off, tracing on)…");
  figures.push(...(await benchTracing({ calls: quick ? 2000 : 10_000 })));
  console.log("bench: artifact upload and download…");
  figures.push(...(await benchArtifacts({ megabytes: quick ? 64 : 1024 })));
} finally {
  await stopSharedPostgres();
}
console.log("");
printTable(figures);
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
const file = new URL("./results/latest.json", import.meta.url);
writeFileSync(file, `${JSON.stringify({ when: new Date().toISOString(), node: process.version, figures }, null, 2)}\n`);
console.log(`\nwritten to ${file.pathname}`);
