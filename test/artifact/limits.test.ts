import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, type ConnectError } from "@connectrpc/connect";
import { LimitExceededSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { auth, bytes, chunk, expectCode, failure, finish, header, sha256, startArtifactFixture, upload, wholeUpload, type ArtifactFixture } from "./support.ts";

const KiB = 1024;

describe("artifact service: quotas and limits", () => {
  let fx: ArtifactFixture;
  before(async () => {
    fx = await startArtifactFixture({ CORRAL_ARTIFACT_MAX_BYTES: "100KiB", CORRAL_RUN_QUOTA_BYTES: "250KiB", CORRAL_RUN_QUOTA_COUNT: "3" });
  });
  after(() => fx?.close());

  const limitOf = (error: ConnectError) => {
    const detail = error.findDetails(LimitExceededSchema)[0];
    return detail && { limit: detail.limit, maximum: detail.maximum, actual: detail.actual };
  };

  it("refuses an artifact larger than the maximum size with RESOURCE_EXHAUSTED (artifact_size)", async () => {
    const run = await seedLaunchedRun(fx.sql);
    await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "exactly-max" }, bytes(100 * KiB, 1), { chunkSize: 30 * KiB }));
    const uploadId = randomUUID();
    const error = await expectCode(
      upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "too-big" }, bytes(100 * KiB + 1, 2), { chunkSize: 30 * KiB })),
      Code.ResourceExhausted,
    );
    assert.deepEqual(limitOf(error), { limit: "artifact_size", maximum: 102_400n, actual: 102_401n });
    const query = await fx.client.queryUpload({ uploadId }, auth(run.token));
    assert.equal(query.committedOffset, 90n * 1024n, "the chunks within the limit are kept; the one past it is not written");
  });

  it("refuses a run's artifact past its count quota with RESOURCE_EXHAUSTED (artifact_count)", async () => {
    const run = await seedLaunchedRun(fx.sql);
    for (const name of ["a", "b", "c"]) await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name }, bytes(10, 3)));
    const error = await expectCode(upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "d" }, bytes(10, 3))), Code.ResourceExhausted);
    assert.deepEqual(limitOf(error), { limit: "artifact_count", maximum: 3n, actual: 4n });
    // The quota is per run.
    const other = await seedLaunchedRun(fx.sql);
    await upload(fx.client, other.token, wholeUpload({ runId: other.runId, name: "d" }, bytes(10, 3)));
  });

  it("refuses bytes past the run's byte quota with RESOURCE_EXHAUSTED (artifact_bytes), counting unfinished uploads", async () => {
    const run = await seedLaunchedRun(fx.sql);
    await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "one" }, bytes(100 * KiB, 4)));
    // Unfinished: its 100 KiB count as soon as they are committed.
    await upload(fx.client, run.token, [header({ runId: run.runId, name: "two" }), chunk(0, bytes(100 * KiB, 5))]);
    const uploadId = randomUUID();
    const error = await expectCode(upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "three" }, bytes(60 * KiB, 6))), Code.ResourceExhausted);
    assert.deepEqual(limitOf(error), { limit: "artifact_bytes", maximum: 256_000n, actual: 260n * 1024n });
    assert.equal((await fx.client.queryUpload({ uploadId }, auth(run.token))).committedOffset, 0n, "none of it was kept");
    // What still fits is taken (the refused upload stays open at offset 0).
    await upload(fx.client, run.token, wholeUpload({ uploadId, runId: run.runId, name: "three" }, bytes(50 * KiB, 7)));
  });

  it("holds the byte quota when several uploads of a run race for it", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const datas = [bytes(100 * KiB, 8), bytes(100 * KiB, 9), bytes(100 * KiB, 10)];
    // Each fits alone; together they are 300 KiB against 250 KiB. Small interleaved chunks.
    const results = await Promise.all(
      datas.map((data, i) =>
        failure(
          upload(
            fx.client,
            run.token,
            (async function* () {
              yield header({ runId: run.runId, name: `race-${i}` });
              for (let offset = 0; offset < data.length; offset += 4 * KiB) {
                yield chunk(offset, data.subarray(offset, offset + 4 * KiB));
                await new Promise((resolve) => setTimeout(resolve, 1));
              }
              yield finish(sha256(data), data.length);
            })(),
          ).then(() => {
            throw new Error("stored");
          }),
        ),
      ),
    );
    const refused = results.filter((e) => e.code === Code.ResourceExhausted);
    assert.ok(refused.length >= 1, `at least one upload is refused: ${results.map((e) => e.message)}`);
    for (const e of refused) assert.equal(limitOf(e)?.limit, "artifact_bytes");
    const used = await fx.sql.one<{ used: string }>(
      `select sum(case when a.completed_at is not null then a.size else u.committed_offset end) as used
         from artifacts a join uploads u on u.id = a.upload_id where a.run_id = ?`,
      [run.runId],
    );
    assert.ok(Number(used!.used) <= 250 * KiB, `committed ${used!.used} bytes, over the quota`);
  });
});
