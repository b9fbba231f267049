import assert from "node:assert/strict";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { invalidArgument, notFound } from "@corral/plumbing/errors.ts";
import type { RunningServer } from "@corral/plumbing/server/create-server.ts";
import { startTestServer } from "../support/test-server.ts";

describe("error interceptor", () => {
  let server: RunningServer;
  let client: Client<typeof RunService>;
  before(async () => {
    server = await startTestServer([RunService], (router) =>
      router.service(RunService, {
        submitRun() {
          throw invalidArgument([
            { field: "spec.repository_url", description: "required" },
            { field: "spec.validation_steps[1].command", description: "required" },
          ]);
        },
        getRun(req) {
          if (req.runId === "missing") throw notFound("run not found");
          // An internal failure whose message must not reach the client.
          throw new Error("connect ECONNREFUSED postgres://admin:hunter2@10.0.0.5/corral");
        },
        async *watchRun() {
          yield { update: { case: "run", value: { id: "r" } } };
          throw new Error("stream broke: SELECT * FROM events WHERE run_id = 'secret-run'");
        },
      }),
    );
    client = createClient(RunService, createGrpcTransport({ baseUrl: server.url }));
  });
  after(() => server.close());

  it("maps a domain error to its code with typed details naming every field", async () => {
    const error = await client.submitRun({}).then(() => assert.fail("expected an error"), (e: unknown) => ConnectError.from(e));
    assert.equal(error.code, Code.InvalidArgument);
    const [violations] = error.findDetails(FieldViolationsSchema);
    assert.deepEqual(violations?.violations.map((v) => v.field), ["spec.repository_url", "spec.validation_steps[1].command"]);
  });

  it("keeps NOT_FOUND", async () => {
    await assert.rejects(client.getRun({ runId: "missing" }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
  });

  it("answers INTERNAL with a reference and no internals for an unexpected error", async () => {
    const error = await client.getRun({ runId: "boom" }).then(() => assert.fail("expected an error"), (e: unknown) => ConnectError.from(e));
    assert.equal(error.code, Code.Internal);
    assert.match(error.rawMessage, /^internal error \(ref [0-9a-f-]{36}\)$/);
    assert.doesNotMatch(error.message, /hunter2|postgres|10\.0\.0\.5/);
  });

  it("maps errors thrown in the middle of a server stream too", async () => {
    const received: string[] = [];
    const error = await (async () => {
      for await (const message of client.watchRun({ runId: "r" })) received.push(message.update.case ?? "");
    })().then(() => assert.fail("expected an error"), (e: unknown) => ConnectError.from(e));
    assert.deepEqual(received, ["run"]);
    assert.equal(error.code, Code.Internal);
    assert.doesNotMatch(error.message, /SELECT|secret-run/);
  });

  it("answers UNIMPLEMENTED for methods a service does not implement", async () => {
    await assert.rejects(client.cancelRun({ runId: "r" }), (e: unknown) => ConnectError.from(e).code === Code.Unimplemented);
  });
});
