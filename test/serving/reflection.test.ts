import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { RunningServer } from "@corral/plumbing/server/create-server.ts";
import { hostPort, loadProto, lookup, reflect } from "../support/grpc-js.ts";
import { startTestServer } from "../support/test-server.ts";
import { grpcurlPath } from "../support/tools.ts";

describe("server reflection", () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer([RunService], (router) => router.service(RunService, {}));
  });
  after(() => server.close());

  for (const version of ["v1", "v1alpha"]) {
    describe(`grpc.reflection.${version}`, () => {
      let client: grpc.Client;
      before(() => {
        const root = loadProto(`grpc/reflection/${version}/reflection.proto`);
        const Client = lookup(root, `grpc.reflection.${version}.ServerReflection`);
        client = new Client(hostPort(server.url), grpc.credentials.createInsecure());
      });
      after(() => client.close());

      it("lists the services", async () => {
        const response = await reflect(client, { list_services: "" });
        const names = response.list_services_response!.service.map((s) => s.name);
        assert.deepEqual(names, [
          "corral.scheduler.v1.RunService",
          "grpc.health.v1.Health",
          "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection",
        ]);
      });

      it("describes a method by symbol, with its imports", async () => {
        const response = await reflect(client, { file_containing_symbol: "corral.scheduler.v1.RunService.SubmitRun" });
        const files = response.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
        assert.equal(files[0]!.name, "corral/scheduler/v1/run_service.proto");
        const method = files[0]!.service.find((s) => s.name === "RunService")!.method.find((m) => m.name === "SubmitRun")!;
        assert.equal(method.inputType, ".corral.scheduler.v1.SubmitRunRequest");
        const names = files.map((f) => f.name);
        for (const dependency of ["corral/common/v1/run_spec.proto", "corral/common/v1/run_event.proto", "google/protobuf/timestamp.proto"]) {
          assert.ok(names.includes(dependency), `missing ${dependency} in ${names.join(", ")}`);
        }
      });

      it("answers by file name, with the .proto suffix clients use", async () => {
        const response = await reflect(client, { file_by_filename: "corral/common/v1/run_spec.proto" });
        const file = fromBinary(FileDescriptorProtoSchema, response.file_descriptor_response!.file_descriptor_proto[0]!);
        assert.ok(file.messageType.some((m) => m.name === "RunSpec"));
      });

      it("answers NOT_FOUND for an unknown symbol", async () => {
        const response = await reflect(client, { file_containing_symbol: "corral.nope.v1.Nothing" });
        assert.equal(response.error_response?.error_code, grpc.status.NOT_FOUND);
      });
    });
  }

  describe("grpcurl", function () {
    const grpcurl = grpcurlPath();
    before(function () {
      if (!existsSync(grpcurl)) {
        console.log(`      (skipped: grpcurl is not built at ${grpcurl}; run test/tools/build-tools.sh, which needs Go)`);
        this.skip();
      }
    });

    it("lists services and describes a method with no proto files", async () => {
      const run = promisify(execFile);
      const list = await run(grpcurl, ["-plaintext", hostPort(server.url), "list"]);
      assert.match(list.stdout, /^corral\.scheduler\.v1\.RunService$/m);
      assert.match(list.stdout, /^grpc\.health\.v1\.Health$/m);
      const description = await run(grpcurl, ["-plaintext", hostPort(server.url), "describe", "corral.scheduler.v1.RunService.WatchRun"]);
      assert.match(description.stdout, /rpc WatchRun \( \.corral\.scheduler\.v1\.WatchRunRequest \) returns \( stream \.corral\.scheduler\.v1\.WatchRunResponse \)/);
    });
  });
});
