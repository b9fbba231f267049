import assert from "node:assert/strict";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { MiB, startArtifactFixture, type ArtifactFixture } from "./support.ts";
import { sampleMemory, type MemoryGrowth } from "./sample-memory.ts";
import { transfer } from "./transfer.ts";

describe("artifact service: memory stays flat", () => {
  const SIZE = 200 * MiB;
  // Whole-file buffering anywhere in the service, upload or download, costs at least SIZE; the
  // bounds here tell streaming from buffering with room for a busy machine, where garbage waits
  // longer for collection (seen: live 3 to 73 MiB, RSS up to 90 MiB). The tight figure (live
  // growth under 64 MiB) is a target of `npm run bench` (bench/artifacts.ts), measured there
  // rather than in a test, as the project measures speed and memory.
  const LIVE_BOUND = SIZE / 2;
  const RSS_BOUND = SIZE * 0.75;
  let fx: ArtifactFixture;
  before(async () => {
    fx = await startArtifactFixture();
  });
  after(() => fx?.close());

  it(`uploads and downloads ${SIZE / MiB} MiB with the service's live memory growing less than ${LIVE_BOUND / MiB} MiB`, async function () {
    this.timeout(180_000);
    const run = await seedLaunchedRun(fx.sql);
    // Warm up: code paths, pools and first allocations are not what is measured.
    await transfer(fx.url, run.token, { mode: "upload", runId: run.runId, name: "warm-up", size: 4 * MiB });
    await transfer(fx.url, run.token, { mode: "download", runId: run.runId, name: "warm-up" });

    let sampler = sampleMemory();
    const sent = await transfer(fx.url, run.token, { mode: "upload", runId: run.runId, name: "big", size: SIZE });
    const uploadGrowth = sampler.stop();
    sampler = sampleMemory();
    const received = await transfer(fx.url, run.token, { mode: "download", runId: run.runId, name: "big" });
    const downloadGrowth = sampler.stop();

    assert.equal(received.bytes, SIZE);
    assert.equal(received.sha256, sent.sha256);
    const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
    const report = (g: MemoryGrowth) => `rss +${mib(g.rss)}, heap +${mib(g.heapUsed)}, buffers +${mib(g.arrayBuffers)}`;
    for (const [what, growth] of [["upload", uploadGrowth], ["download", downloadGrowth]] as const) {
      assert.ok(growth.heapUsed + growth.arrayBuffers < LIVE_BOUND, `${what}: ${report(growth)}`);
      assert.ok(growth.rss < RSS_BOUND, `${what}: ${report(growth)}`);
    }
  });
});
