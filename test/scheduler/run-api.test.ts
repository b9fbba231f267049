import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { RunEventSchema } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus, Runtime } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { FieldViolationsSchema, RunStateConflictSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { startSchedulerFixture, type SchedulerFixture } from "../support/scheduler.ts";
import { hostPort, loadProto, lookup, unary } from "../support/grpc-js.ts";

const spec = (repositoryUrl = "file:///srv/git/app.git") => ({
  repositoryUrl,
  baseRef: "main",
  agent: { commandTemplate: "goose run --instructions {prompt_file}", prompt: "Fix the flaky test" },
});

const codeOf = (error: unknown) => ConnectError.from(error).code;
const statusName = (status: RunStatus) => Object.entries(RunStatus).find(([, value]) => value === status)?.[0];

describe("scheduler: RunService", () => {
  let fx: SchedulerFixture;
  // Dispatch paused: these runs stay queued, so the API is tested on its own.
  before(async () => {
    fx = await startSchedulerFixture({ CORRAL_MAX_CONCURRENT_RUNS: "0" });
  });
  after(() => fx.close());

  it("stores a valid run as queued, with every default resolved", async () => {
    const { run } = await fx.client.submitRun({ spec: spec() });
    assert.equal(run?.status, RunStatus.QUEUED);
    assert.equal(run?.runtime, Runtime.LOCAL);
    assert.equal(run?.spec?.branch, `corral/${run?.id}`);
    assert.equal(run?.spec?.timeouts?.run?.seconds, 3600n);
    assert.equal(run?.spec?.commit?.authorName, "Corral");
    const got = await fx.client.getRun({ runId: run!.id });
    assert.deepEqual(got.run?.spec, run?.spec);
  });

  it("answers INVALID_ARGUMENT naming every bad field at once", async () => {
    const error = await fx.client
      .submitRun({ spec: { repositoryUrl: "https://bob:hunter2@example.com/r.git", baseRef: "../main", agent: { commandTemplate: "x {nope}" }, validationSteps: [{ name: "test" }] } })
      .then(() => assert.fail("expected INVALID_ARGUMENT"), (e: unknown) => ConnectError.from(e));
    assert.equal(error.code, Code.InvalidArgument);
    const fields = error.findDetails(FieldViolationsSchema)[0]!.violations.map((v) => v.field);
    for (const field of ["spec.repository_url", "spec.base_ref", "spec.agent.command_template", "spec.agent.prompt", "spec.validation_steps[0].command"]) {
      assert.ok(fields.includes(field), `${field} missing from ${fields}`);
    }
    assert.doesNotMatch(error.message, /hunter2/, "the embedded password is never echoed");
  });

  it("returns the first run for a repeated request_id", async () => {
    const first = await fx.client.submitRun({ spec: spec(), requestId: "req-42" });
    const second = await fx.client.submitRun({ spec: spec(), requestId: "req-42" });
    assert.equal(second.run?.id, first.run?.id);
  });

  it("lists newest first, page by page, with filters", async () => {
    const repo = `file:///srv/git/list-${Date.now()}.git`;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await fx.client.submitRun({ spec: spec(repo) })).run!.id);
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await fx.client.listRuns({ repositoryUrl: repo, pageSize: 2, pageToken });
      assert.ok(page.runs.length <= 2);
      seen.push(...page.runs.map((r) => r.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.deepEqual(seen, [...ids].reverse());
    const queued = await fx.client.listRuns({ repositoryUrl: repo, statuses: [RunStatus.QUEUED] });
    assert.equal(queued.runs.length, 5);
    const none = await fx.client.listRuns({ repositoryUrl: repo, statuses: [RunStatus.COMPLETED] });
    assert.equal(none.runs.length, 0);
  });

  it("rejects a forged page token, an oversized page and an unknown status by field", async () => {
    const error = await fx.client
      .listRuns({ pageToken: "not-a-token", pageSize: 501, statuses: [99 as RunStatus] })
      .then(() => assert.fail("expected INVALID_ARGUMENT"), (e: unknown) => ConnectError.from(e));
    const fields = error.findDetails(FieldViolationsSchema)[0]!.violations.map((v) => v.field).sort();
    assert.deepEqual(fields, ["page_size", "page_token", "statuses[0]"]);
  });

  it("answers NOT_FOUND for unknown and malformed run ids", async () => {
    await assert.rejects(fx.client.getRun({ runId: "0b7e3c2a-0000-4000-8000-000000000000" }), (e) => codeOf(e) === Code.NotFound);
    await assert.rejects(fx.client.getRun({ runId: "'; drop table runs; --" }), (e) => codeOf(e) === Code.NotFound);
  });

  it("cancels a queued run at once, idempotently, and refuses to retry an unfinished one", async () => {
    const { run } = await fx.client.submitRun({ spec: spec() });
    await assert.rejects(fx.client.retryRun({ runId: run!.id }), (e) => {
      const error = ConnectError.from(e);
      return error.code === Code.FailedPrecondition && error.findDetails(RunStateConflictSchema)[0]?.action === "retry";
    });
    const cancelled = await fx.client.cancelRun({ runId: run!.id, reason: "changed my mind" });
    assert.equal(cancelled.run?.status, RunStatus.CANCELLED);
    assert.match(cancelled.run!.reason, /changed my mind/);
    const again = await fx.client.cancelRun({ runId: run!.id });
    assert.equal(again.run?.status, RunStatus.CANCELLED, "cancelling twice is a no-op");
    const retried = await fx.client.retryRun({ runId: run!.id });
    assert.equal(retried.run?.status, RunStatus.QUEUED);
    assert.equal(retried.run?.reason, "");
    assert.equal(retried.run?.cancelRequested, false);
  });

  it("refuses to cancel a finished run", async () => {
    const { run } = await fx.client.submitRun({ spec: spec() });
    await fx.sql.run("update runs set status = 'completed', finished_at = now() where id = ?", [run!.id]);
    const error = await fx.client.cancelRun({ runId: run!.id }).then(() => assert.fail(), (e: unknown) => ConnectError.from(e));
    assert.equal(error.code, Code.FailedPrecondition);
    assert.equal(error.findDetails(RunStateConflictSchema)[0]?.status, "completed");
  });

  it("WatchRun replays stored events from a position, then ends once the run is terminal", async () => {
    const { run } = await fx.client.submitRun({ spec: spec() });
    for (let sequence = 1; sequence <= 3; sequence++) {
      await fx.sql.run(
        "insert into events (run_id, attempt, sequence, type, occurred_at, payload) values (?, 1, ?, 'run.progress', now(), decode(?, 'base64'))",
        [run!.id, sequence, Buffer.from(toBinary(RunEventSchema, create(RunEventSchema, { sequence: BigInt(sequence), time: timestampNow(), payload: { case: "progress", value: { message: `step ${sequence}` } } }))).toString("base64")],
      );
    }
    const seen: string[] = [];
    const watching = (async () => {
      for await (const message of fx.client.watchRun({ runId: run!.id, afterAttempt: 1, afterSequence: 1n })) {
        if (message.update.case === "run") seen.push(`run:${statusName(message.update.value.status)}`);
        if (message.update.case === "event") seen.push(`event:${message.update.value.attempt}/${message.update.value.event?.sequence}`);
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await fx.client.cancelRun({ runId: run!.id });
    await watching;
    assert.deepEqual(seen, ["run:QUEUED", "event:1/2", "event:1/3", "run:CANCELLED"]);
  });

  it("serves a plain @grpc/grpc-js client built from the .proto files: submit, then follow WatchRun to the end", async () => {
    const RunServiceClient = lookup(loadProto("corral/scheduler/v1/run_service.proto"), "corral.scheduler.v1.RunService");
    const client = new RunServiceClient(hostPort(fx.url), grpc.credentials.createInsecure());
    try {
      const submitted = await unary<{ run: { id: string; status: string } }>(client, "SubmitRun", {
        spec: { repository_url: "file:///srv/git/plain.git", base_ref: "main", agent: { command_template: "true", prompt: "hello" } },
      });
      assert.equal(submitted.run.status, "RUN_STATUS_QUEUED");
      const statuses: string[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        const call = (client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<{ run?: { status: string } }>>).WatchRun!({ run_id: submitted.run.id });
        call.on("data", (message) => message.run && statuses.push(message.run.status));
        call.on("end", resolve);
        call.on("error", reject);
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await unary(client, "CancelRun", { run_id: submitted.run.id, reason: "done" });
      await ended;
      assert.deepEqual(statuses, ["RUN_STATUS_QUEUED", "RUN_STATUS_CANCELLED"]);
    } finally {
      client.close();
    }
  });
});
