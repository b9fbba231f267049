import { randomFillSync, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { sampleMemory, type MemoryGrowth } from "../test/artifact/sample-memory.ts";
import { MiB, startArtifactFixture } from "../test/artifact/support.ts";
import { transfer } from "../test/artifact/transfer.ts";
import { seedLaunchedRun } from "../test/support/seed-run.ts";
import type { Figure } from "./stats.ts";

/**
 * Artifacts, with one file of `megabytes` MiB on the store's disk:
 *
 * - throughput: uploading the file and downloading it back to a file through the service (client
 *   in its own process, as an agent or the CLI is; both ends synced), beside fs.copyFile of the
 *   same file on the same disk, synced, in the same run (and, for context, a plain fs stream copy);
 * - the service's memory while it moves that much: live memory (after a collection) and RSS,
 *   peak growth over the transfer, beside the size moved (flat means a few MiB, whatever the size);
 * - resuming: an upload whose client is killed part-way, then resumed by a new client, which
 *   sends only what the service had not committed.
 */
export async function benchArtifacts(options: { megabytes: number } = { megabytes: 1024 }): Promise<Figure[]> {
  const size = options.megabytes * MiB;
  const label = options.megabytes >= 1024 ? `${options.megabytes / 1024} GiB` : `${options.megabytes} MiB`;
  const fx = await startArtifactFixture({ CORRAL_ARTIFACT_MAX_BYTES: "4GiB", CORRAL_RUN_QUOTA_BYTES: "64GiB" });
  const source = join(fx.sandbox, "bench-source");
  const copy = join(fx.sandbox, "bench-copy");
  const downloaded = join(fx.sandbox, "bench-downloaded");
  try {
    await writeRandomFile(source, size);
    const run = await seedLaunchedRun(fx.sql);
    const up = (name: string, extra: { killAfter?: number; uploadId?: string } = {}) =>
      transfer(fx.url, run.token, { mode: "upload-file", runId: run.runId, name, path: source, uploadId: extra.uploadId ?? randomUUID(), killAfter: extra.killAfter });
    const down = (name: string) => transfer(fx.url, run.token, { mode: "download-file", runId: run.runId, name, path: downloaded });

    // Warm up code paths, pools and the first allocations (a small upload and download).
    await transfer(fx.url, run.token, { mode: "upload", runId: run.runId, name: "warm-up", size: 4 * MiB });
    await transfer(fx.url, run.token, { mode: "download", runId: run.runId, name: "warm-up" });

    const copyRate = await copyFileRate(source, copy, size);
    const streamRate = await streamCopyRate(source, copy, size);
    const uploaded = await up("throughput");
    const fetched = await down("throughput");
    if (fetched.sha256 !== uploaded.sha256 || fetched.bytes !== size) throw new Error("the downloaded artifact differs from the uploaded one");

    // Measured apart from throughput: the sampler's forced collections slow the service down.
    // A different name, same content: the upload writes and verifies every byte, and at the end
    // finds the blob stored already.
    let sampler = sampleMemory();
    await up("memory");
    const upMemory = sampler.stop();
    sampler = sampleMemory();
    await down("memory");
    const downMemory = sampler.stop();

    // Resuming: the client dies after handing 40% of the file to the stream; the service commits
    // what it wrote; a new client asks for the committed offset and sends the rest.
    const uploadId = randomUUID();
    await up("resumed", { uploadId, killAfter: Math.floor(size * 0.4) }).then(
      () => {
        throw new Error("the client meant to die mid-upload finished it");
      },
      () => undefined,
    );
    const resumed = await transfer(fx.url, run.token, { mode: "resume-file", runId: run.runId, name: "resumed", path: source, uploadId });
    if (resumed.sha256 !== uploaded.sha256) throw new Error("the resumed upload stored other content");
    const missing = size - resumed.committed!;

    const rate = (ms: number) => size / MiB / (ms / 1000);
    const baseline = { name: "fs.copyFile (+fsync), same file", value: copyRate };
    const throughput = (what: string, value: number, target?: Figure["target"]): Figure => ({ name: `artifact ${what}, ${label}`, value, unit: "MiB/s", baseline, target });
    const upRate = rate(uploaded.ms);
    const live = (g: MemoryGrowth) => (g.heapUsed + g.arrayBuffers) / MiB;
    const memory = (what: string, g: MemoryGrowth): Figure[] => [
      {
        name: `service live memory growth, ${what} ${label}`,
        value: live(g),
        unit: "MiB",
        baseline: { name: "artifact size", value: options.megabytes },
        target: { text: "< 64 MiB (flat)", met: live(g) < 64 },
      },
      {
        name: `service peak RSS growth, ${what} ${label}`,
        value: g.rss / MiB,
        unit: "MiB",
        baseline: { name: "artifact size", value: options.megabytes },
        target: { text: "< 64 MiB", met: g.rss < 64 * MiB },
      },
    ];
    return [
      // Context: what a userland read/write loop (as any service must do) gets from the same disk.
      { name: `fs stream copy (+fsync), ${label}`, value: streamRate, unit: "MiB/s", baseline },
      throughput("upload", upRate, { text: "≥ 70% of fs.copyFile", met: upRate >= copyRate * 0.7 }),
      throughput("download", rate(fetched.ms)),
      ...memory("upload", upMemory),
      ...memory("download", downMemory),
      {
        name: `resumed upload after a kill at ${((resumed.committed! / size) * 100).toFixed(0)}%: bytes sent`,
        value: resumed.sent! / MiB,
        unit: "MiB",
        baseline: { name: "bytes missing", value: missing / MiB },
        target: { text: "only the missing bytes", met: resumed.sent === missing },
      },
    ];
  } finally {
    await rm(source, { force: true });
    await rm(copy, { force: true });
    await rm(downloaded, { force: true });
    await fx.close();
  }
}

/** Writes `size` random bytes in 16 MiB blocks (never the whole file in memory), synced. */
async function writeRandomFile(path: string, size: number): Promise<void> {
  const block = randomFillSync(Buffer.allocUnsafe(16 * MiB));
  const file = await open(path, "w");
  try {
    for (let offset = 0, i = 0; offset < size; offset += block.length, i++) {
      block.writeUInt32BE(i, 0); // no two blocks alike, so nothing downstream can dedupe them
      await file.write(block, 0, Math.min(block.length, size - offset), offset);
    }
    await file.sync();
  } finally {
    await file.close();
  }
}

/** MiB/s of copying the file through fs streams in 1 MiB pieces and syncing the copy. */
async function streamCopyRate(source: string, target: string, size: number): Promise<number> {
  const started = performance.now();
  await pipeline(createReadStream(source, { highWaterMark: MiB }), createWriteStream(target));
  const handle = await open(target, "r+");
  await handle.sync();
  await handle.close();
  const rate = size / MiB / ((performance.now() - started) / 1000);
  await rm(target, { force: true });
  return rate;
}

/** MiB/s of fs.copyFile of the file and syncing the copy, as the store's disk allows. */
async function copyFileRate(source: string, target: string, size: number): Promise<number> {
  const started = performance.now();
  await copyFile(source, target);
  const handle = await open(target, "r+");
  await handle.sync();
  await handle.close();
  const rate = size / MiB / ((performance.now() - started) / 1000);
  await rm(target, { force: true });
  return rate;
}
