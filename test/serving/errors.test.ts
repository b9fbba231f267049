import assert from "node:assert/strict";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GetRunRequestSchema, RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
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
  describe("an undecodable request body", () => {
    /** A unary POST over the Connect protocol on a raw HTTP/2 stream: status, content type, body. */
    const connectPost = (path: string, body: Uint8Array, contentType: string) =>
      new Promise<{ status: number; contentType: string; body: { code?: string; message?: string } }>((resolve, reject) => {
        const session = http2.connect(server.url);
        session.on("error", reject);
        const request = session.request({ ":method": "POST", ":path": path, "content-type": contentType, "connect-protocol-version": "1" });
        let status = 0;
        let type = "";
        let text = "";
        request.on("response", (headers) => {
          status = Number(headers[":status"]);
          type = String(headers["content-type"]);
        });
        request.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        request.on("end", () => {
          session.close();
          resolve({ status, contentType: type, body: JSON.parse(text) as { code?: string; message?: string } });
        });
        request.end(body);
      });
    const GET_RUN = "/corral.scheduler.v1.RunService/GetRun";

    it("is INVALID_ARGUMENT (400) over the Connect protocol, binary as JSON, with the decoder's reason", async () => {
      const binary = await connectPost(GET_RUN, Uint8Array.of(0xff, 0xff, 0xff), "application/proto");
      assert.deepEqual([binary.status, binary.body.code], [400, "invalid_argument"]);
      assert.match(binary.body.message!, /^parse binary: /);
      assert.match(binary.contentType, /^application\/json/);
      const json = await connectPost(GET_RUN, Buffer.from("{not json"), "application/json");
      assert.deepEqual([json.status, json.body.code], [400, "invalid_argument"]);
    });

    /** A unary call over gRPC-Web on a raw HTTP/2 stream: the status in its trailers frame. */
    const grpcWebPost = (path: string, message: Uint8Array) =>
      new Promise<{ status: string | undefined; message: string | undefined }>((resolve, reject) => {
        const session = http2.connect(server.url);
        session.on("error", reject);
        const request = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" });
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        request.on("end", () => {
          session.close();
          let body = Buffer.concat(chunks);
          let trailers = "";
          while (body.length >= 5) {
            const length = body.readUInt32BE(1);
            if (body[0]! & 0x80) trailers = body.subarray(5, 5 + length).toString("latin1");
            body = body.subarray(5 + length);
          }
          const field = (name: string) => /^([^:]+):\s*(.*)$/m.exec(trailers.split("\r\n").find((line) => line.startsWith(`${name}:`)) ?? "")?.[2];
          resolve({ status: field("grpc-status"), message: decodeURIComponent(field("grpc-message") ?? "") });
        });
        const head = Buffer.alloc(5);
        head.writeUInt32BE(message.byteLength, 1);
        request.end(Buffer.concat([head, message]));
      });

    it("is INVALID_ARGUMENT over gRPC-Web too; a fault stays INTERNAL, other codes as they were", async () => {
      const undecodable = await grpcWebPost(GET_RUN, Uint8Array.of(0xff, 0xff, 0xff));
      assert.equal(undecodable.status, String(Code.InvalidArgument));
      assert.match(undecodable.message!, /^parse binary: /);
      const fault = await grpcWebPost(GET_RUN, toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: "boom" })));
      assert.equal(fault.status, String(Code.Internal));
      const missing = await grpcWebPost(GET_RUN, toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: "missing" })));
      assert.equal(missing.status, String(Code.NotFound));
    });

    it("leaves a server fault INTERNAL (500) over the Connect protocol, a decodable request answered as usual", async () => {
      const fault = await connectPost(GET_RUN, toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: "boom" })), "application/proto");
      assert.deepEqual([fault.status, fault.body.code], [500, "internal"]);
      assert.match(fault.body.message!, /^internal error \(ref /);
      const missing = await connectPost(GET_RUN, toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: "missing" })), "application/proto");
      assert.deepEqual([missing.status, missing.body.code], [404, "not_found"]);
    });
  });
});
