import { randomFillSync } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { sampleMemory, type MemoryGrowth } from "../test/artifact/sample-memory.ts";
import { MiB, startArtifactFixture } from "../test/artifact/support.ts";
import { transfer } from "../test/artifact/transfer.ts";
import { seedLaunchedRun } from "../test/support/seed-run.ts";
import type { Figure } from "./stats.ts";

/**
 * Artifact upload and download throughput through the service (client in its own process, as an
 * agent or the CLI would be), beside a plain fs stream copy of a file of the same size into the
 * same directory; then the service's live memory while it moves that much, beside the size moved
 * (flat means a few MiB, whatever the size).
 */
export async function benchArtifacts(options: { megabytes: number } = { megabytes: 200 }): Promise<Figure[]> {
  const size = options.megabytes * MiB;
  const fx = await startArtifactFixture();
  try {
    const run = await seedLaunchedRun(fx.sql);
    // Warm up code paths and the first allocations.
    await transfer(fx.url, run.token, { mode: "upload", runId: run.runId, name: "warm-up", size: 4 * MiB });
    await transfer(fx.url, run.token, { mode: "download", runId: run.runId, name: "warm-up" });

    const copyRate = await fsCopyRate(fx.sandbox, size);
    const up = await transfer(fx.url, run.token, { mode: "upload", runId: run.runId, name: "throughput", size });
    const down = await transfer(fx.url, run.token, { mode: "download", runId: run.runId, name: "throughput" });
    if (down.sha256 !== up.sha256 || down.bytes !== size) throw new Error("the downloaded artifact differs from the uploaded one");

    // Measured apart from throughput: the sampler's forced collections slow the service down.
    let sampler = sampleMemory();
    await transfer(fx.url, run.token, { mode: "upload", runId: run.runId, name: "memory", size });
    const upMemory = sampler.stop();
    sampler = sampleMemory();
    await transfer(fx.url, run.token, { mode: "download", runId: run.runId, name: "memory" });
    const downMemory = sampler.stop();

    const rate = (ms: number) => size / MiB / (ms / 1000);
    const baseline = { name: "fs stream copy (+fsync)", value: copyRate };
    const throughput = (what: string, value: number): Figure => ({
      name: `artifact ${what}, ${options.megabytes} MiB`,
      value,
      unit: "MiB/s",
      baseline,
      target: { text: "≥ 10% of fs copy", met: value >= copyRate * 0.1 },
    });
    const live = (g: MemoryGrowth) => (g.heapUsed + g.arrayBuffers) / MiB;
    const memory = (what: string, g: MemoryGrowth): Figure[] => [
      {
        name: `service live memory growth, ${what}`,
        value: live(g),
        unit: "MiB",
        baseline: { name: "artifact size", value: options.megabytes },
        target: { text: "< 64 MiB (flat)", met: live(g) < 64 },
      },
      {
        name: `service RSS growth, ${what}`,
        value: g.rss / MiB,
        unit: "MiB",
        baseline: { name: "artifact size", value: options.megabytes },
        target: { text: "< 3/4 of the artifact", met: g.rss < size * 0.75 },
      },
    ];
    return [throughput("upload", rate(up.ms)), throughput("download", rate(down.ms)), ...memory("upload", upMemory), ...memory("download", downMemory)];
  } finally {
    await fx.close();
  }
}

/** MiB/s of copying a file with fs streams and syncing the copy, as the store's disk allows. */
async function fsCopyRate(dir: string, size: number): Promise<number> {
  const source = join(dir, "bench-source");
  const target = join(dir, "bench-copy");
  await writeFile(source, randomFillSync(Buffer.allocUnsafe(size)));
  try {
    const started = performance.now();
    await pipeline(createReadStream(source, { highWaterMark: MiB }), createWriteStream(target));
    const handle = await open(target, "r+");
    await handle.sync();
    await handle.close();
    return size / MiB / ((performance.now() - started) / 1000);
  } finally {
    await rm(source, { force: true });
    await rm(target, { force: true });
  }
}
