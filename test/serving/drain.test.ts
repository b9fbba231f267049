import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@corral/contract/grpc/health/v1/health_pb.ts";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { startTestServer } from "../support/test-server.ts";

describe("graceful drain", () => {
  it("ends open streams with UNAVAILABLE, reports NOT_SERVING, and closes with clients still connected", async () => {
    const server = await startTestServer([RunService], (router) => router.service(RunService, {}));
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const seen: ServingStatus[] = [];
    // A long-lived stream that only ends when the server drains.
    const watching = (async () => {
      for await (const response of client.watch({ service: "corral.scheduler.v1.RunService" })) {
        seen.push(response.status);
        if (seen.length === 1) void server.close(2000);
      }
    })().then(() => undefined, (error: unknown) => ConnectError.from(error));

    const error = await watching;
    assert.equal(seen[0], ServingStatus.SERVING);
    // The watcher either saw NOT_SERVING before the stream ended, or the stream ended first.
    assert.ok(seen.length === 1 || seen[1] === ServingStatus.NOT_SERVING, `unexpected statuses ${seen}`);
    assert.ok(error instanceof ConnectError, "the stream must end with an error, not silently");
    assert.equal(error.code, Code.Unavailable);
    await server.close(); // idempotent, and resolves although the client transport is still open
    await assert.rejects(client.check({ service: "" }), (e: unknown) => ConnectError.from(e).code === Code.Unavailable);
  });
});
