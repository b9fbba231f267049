import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { auth, bytes, chunk, eventually, expectCode, header, sha256, startArtifactFixture, upload, wholeUpload, type ArtifactFixture } from "./support.ts";

const NAMES = ["zeta", "a.txt", "a_b", "axb", "B", "É", "logs/agent.log", "logs/run.log", "logs/validate/1.log", "logs/validate/2.log", "reports/junit.xml"];

describe("artifact service: Stat and List", () => {
  let fx: ArtifactFixture;
  let run: SeededRun;
  const liveId = randomUUID();

  before(async () => {
    fx = await startArtifactFixture();
    run = await seedLaunchedRun(fx.sql);
    for (const [i, name] of NAMES.entries()) await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name }, bytes(100 + i, 40 + i)));
    // An upload still going on: listed, unfinished, sized by what it committed.
    await upload(fx.client, run.token, [header({ uploadId: liveId, runId: run.runId, name: "logs/live.log", contentType: "text/plain; charset=utf-8" }), chunk(0, bytes(333, 1))]);
  });
  after(() => fx?.close());

  /** Every page of a listing, following the tokens. */
  async function allPages(request: { namePrefix?: string; pageSize: number }) {
    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await fx.client.list({ runId: run.runId, ...request, pageToken }, auth(run.token));
      pages.push(page.artifacts.map((a) => a.name));
      pageToken = page.nextPageToken;
      assert.ok(pages.length < 50, "paging terminates");
    } while (pageToken);
    return pages;
  }

  const byteOrder = (names: string[]) => [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

  it("lists a run's artifacts by name in byte order, page by page", async () => {
    const all = byteOrder([...NAMES, "logs/live.log"]);
    const pages = await allPages({ pageSize: 5 });
    assert.deepEqual(pages.map((p) => p.length), [5, 5, 2]);
    assert.deepEqual(pages.flat(), all);
    assert.deepEqual((await allPages({ pageSize: 0 })).flat(), all, "page size 0 means the default (100)");
    assert.deepEqual((await allPages({ pageSize: 12 })).length, 1, "an exact fit has no empty last page");
  });

  it("filters by name prefix literally (no wildcards), with paging", async () => {
    assert.deepEqual(await allPages({ namePrefix: "logs/", pageSize: 2 }), [
      ["logs/agent.log", "logs/live.log"],
      ["logs/run.log", "logs/validate/1.log"],
      ["logs/validate/2.log"],
    ]);
    assert.deepEqual((await allPages({ namePrefix: "a_", pageSize: 10 })).flat(), ["a_b"]);
    assert.deepEqual((await allPages({ namePrefix: "nothing", pageSize: 10 })).flat(), []);
  });

  it("describes finished and unfinished artifacts", async () => {
    const listed = (await fx.client.list({ runId: run.runId, namePrefix: "logs/live" }, auth(run.token))).artifacts[0];
    assert.equal(listed?.complete, false);
    assert.equal(listed?.size, 333n);
    assert.equal(listed?.sha256, "");
    assert.equal(listed?.contentType, "text/plain; charset=utf-8");
    assert.equal(listed?.completedAt, undefined);

    const stat = (await fx.client.stat({ runId: run.runId, name: "logs/run.log" }, auth(run.token))).artifact!;
    const index = NAMES.indexOf("logs/run.log");
    assert.equal(stat.runId, run.runId);
    assert.equal(stat.size, BigInt(100 + index));
    assert.equal(stat.sha256, sha256(bytes(100 + index, 40 + index)));
    assert.equal(stat.contentType, "application/octet-stream");
    assert.equal(stat.complete, true);
    assert.equal(stat.attempt, 1);
    assert.ok(stat.createdAt && stat.completedAt && stat.completedAt.seconds >= stat.createdAt.seconds);

    // Once more bytes are committed, the unfinished size follows.
    await upload(fx.client, run.token, [header({ uploadId: liveId, runId: run.runId, name: "logs/live.log" }), chunk(333, bytes(7, 2))]);
    await eventually(async () => ((await fx.client.stat({ runId: run.runId, name: "logs/live.log" }, auth(run.token))).artifact?.size === 340n ? true : undefined), "size 340");
    await expectCode(fx.client.stat({ runId: run.runId, name: "logs/none.log" }, auth(run.token)), Code.NotFound);
  });

  it("validates List and Stat requests, naming the fields", async () => {
    const fields = async (call: Promise<unknown>) =>
      (await expectCode(call, Code.InvalidArgument)).findDetails(FieldViolationsSchema)[0]?.violations.map((v) => v.field).sort();
    assert.deepEqual(await fields(fx.client.list({ runId: run.runId, pageSize: 1001 }, auth(run.token))), ["page_size"]);
    assert.deepEqual(await fields(fx.client.list({ runId: run.runId, pageToken: "garbage!" }, auth(run.token))), ["page_token"]);
    assert.deepEqual(await fields(fx.client.list({ runId: "run-1", namePrefix: "\u0000" }, auth(run.token))), ["name_prefix", "run_id"]);
    assert.deepEqual(await fields(fx.client.stat({ runId: run.runId, name: "" }, auth(run.token))), ["name"]);
  });
});
