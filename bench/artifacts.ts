import { randomFillSync, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { sampleMemory, type MemoryGrowth } from "../test/artifact/sample-memory.ts";
import { MiB, startArtifactFixture } from "../test/artifact/support.ts";
import { transfer } from "../test/artifact/transfer.ts";
import { seedLaunchedRun } from "../test/support/seed-run.ts";
import { percentile, type Figure } from "./stats.ts";

/**
 * Artifacts, with one file of `megabytes` MiB on the store's disk:
 *
 * - throughput: uploading the file and downloading it back to a file through the service (client
 *   in its own process, as an agent or the CLI is; both ends synced), beside fs.copyFile of the
 *   same file on the same disk in the same run, plain and followed by an fsync (the upload's own
 *   durability, which the target is judged against), and for context an fs stream copy; the
 *   median of a few rounds after a warm-up;
 * - the service's memory while it moves that much: live memory (after a collection) and RSS,
 *   peak growth over the transfer, beside the size moved (flat means a few MiB, whatever the size);
 * - resuming: an upload whose client is killed part-way, then resumed by a new client, which
 *   sends only what the service had not committed.
 */
export async function benchArtifacts(options: { megabytes: number; rounds?: number } = { megabytes: 1024 }): Promise<Figure[]> {
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

    // Rounds, each measuring every figure in turn, and the median of each: whatever else loads
    // the machine at a given moment weighs on all of them alike. The first upload and download
    // of the file are a warm-up (page cache, JIT, pools) and are not counted.
    const rate = (ms: number) => size / MiB / (ms / 1000);
    const rounds = { copy: [] as number[], durableCopy: [] as number[], stream: [] as number[], up: [] as number[], down: [] as number[] };
    const uploaded = await up("throughput-warm-up");
    await down("throughput-warm-up");
    for (let round = 0; round < (options.rounds ?? 3); round++) {
      rounds.copy.push(await copyFileRate(source, copy, size, { sync: false }));
      rounds.durableCopy.push(await copyFileRate(source, copy, size, { sync: true }));
      rounds.stream.push(await streamCopyRate(source, copy, size));
      const again = await up(`throughput-${round}`);
      if (again.sha256 !== uploaded.sha256) throw new Error("an upload of the same file has another digest");
      rounds.up.push(rate(again.ms));
      const fetched = await down(`throughput-${round}`);
      if (fetched.sha256 !== uploaded.sha256 || fetched.bytes !== size) throw new Error("the downloaded artifact differs from the uploaded one");
      rounds.down.push(rate(fetched.ms));
    }
    const show = (rates: number[]) => rates.map((r) => Math.round(r)).join(", ");
    console.log(
      `bench: artifact rounds (MiB/s): fs.copyFile ${show(rounds.copy)}; fs.copyFile + fsync ${show(rounds.durableCopy)}; ` +
        `fs stream copy + fsync ${show(rounds.stream)}; upload ${show(rounds.up)}; download ${show(rounds.down)}`,
    );
    const copyRate = median(rounds.copy);
    const durableCopyRate = median(rounds.durableCopy);

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

    // Two baselines: a plain fs.copyFile ends in the page cache, while an upload is durable (its
    // bytes are fsynced before their offset is committed, and before the finish's rename), so
    // the target is judged against fs.copyFile followed by an fsync of the copy: the same
    // durability. The plain copy is shown too, with its own ratio.
    const plain = { name: "fs.copyFile, same file", value: copyRate };
    const durable = { name: "fs.copyFile + fsync, same file", value: durableCopyRate };
    const throughput = (what: string, value: number, baseline: Figure["baseline"], target?: Figure["target"]): Figure => ({
      name: `artifact ${what}, ${label}`,
      value,
      unit: "MiB/s",
      baseline,
      target,
    });
    const upRate = median(rounds.up);
    const downRate = median(rounds.down);
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
      { name: `fs stream copy + fsync, ${label}`, value: median(rounds.stream), unit: "MiB/s", baseline: durable },
      throughput("upload (target's ratio)", upRate, durable, { text: "≥ 70% of fs.copyFile + fsync", met: upRate >= durableCopyRate * 0.7 }),
      throughput("upload", upRate, plain),
      throughput("download", downRate, plain),
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

/** MiB/s of fs.copyFile of the file, and with `sync`, of syncing the copy too. */
async function copyFileRate(source: string, target: string, size: number, options: { sync: boolean }): Promise<number> {
  const started = performance.now();
  await copyFile(source, target);
  if (options.sync) {
    const handle = await open(target, "r+");
    await handle.sync();
    await handle.close();
  }
  const rate = size / MiB / ((performance.now() - started) / 1000);
  await rm(target, { force: true });
  return rate;
}

const median = (values: number[]) => percentile(values, 50);
