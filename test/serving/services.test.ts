import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createLogger } from "@corral/plumbing/logger.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import type { RunningService } from "@corral/plumbing/start-service.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { startScheduler } from "@corral/scheduler/start-scheduler.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { startControlPlane } from "@corral/control-plane/start-control-plane.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { startArtifact } from "@corral/artifact/start-artifact.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { hostPort, loadProto, lookup, reflect, unary } from "../support/grpc-js.ts";

const logger = createLogger({ name: "test", level: process.env.TEST_LOG_LEVEL ?? "silent" });

describe("the three services", () => {
  let database: TestDatabase;
  const running: { service: string; server: RunningService }[] = [];

  before(async () => {
    database = await createTestDatabase();
    const env = {
      DATABASE_URL: database.url,
      CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0",
      CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
      CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
    };
    // Started together, as a deployment would: they must not race on the schema.
    const [scheduler, controlPlane, artifact] = await Promise.all([
      startScheduler(loadConfig(schedulerConfig, env), logger),
      startControlPlane(loadConfig(controlPlaneConfig, env), logger),
      startArtifact(loadConfig(artifactConfig, env), logger),
    ]);
    running.push(
      { service: "corral.scheduler.v1.RunService", server: scheduler },
      { service: "corral.runner.v1.RunnerService", server: controlPlane },
      { service: "corral.artifact.v1.ArtifactService", server: artifact },
    );
  });

  after(async () => {
    await Promise.all(running.map((r) => r.server.close()));
    await database?.drop();
  });

  it("answer grpc.health.v1.Health to a plain @grpc/grpc-js client built from the .proto files", async () => {
    const Health = lookup(loadProto("grpc/health/v1/health.proto"), "grpc.health.v1.Health");
    for (const { service, server } of running) {
      const client = new Health(hostPort(server.server.url), grpc.credentials.createInsecure());
      try {
        const overall = await unary<{ status: string }>(client, "Check", { service: "" });
        assert.equal(overall.status, "SERVING", `${service}: overall`);
        const own = await unary<{ status: string }>(client, "Check", { service });
        assert.equal(own.status, "SERVING", service);
        await assert.rejects(unary(client, "Check", { service: "no.such.Service" }), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
      } finally {
        client.close();
      }
    }
  });

  it("each serves its own service, reachable by a plain gRPC client, and no other's", async () => {
    const Reflection = lookup(loadProto("grpc/reflection/v1/reflection.proto"), "grpc.reflection.v1.ServerReflection");
    const all = running.map((r) => r.service);
    for (const { service, server } of running) {
      const client = new Reflection(hostPort(server.server.url), grpc.credentials.createInsecure());
      const response = await reflect(client, { list_services: "" });
      const names = response.list_services_response!.service.map((s) => s.name);
      client.close();
      assert.ok(names.includes(service), `${service} missing from ${names}`);
      for (const other of all.filter((s) => s !== service)) assert.ok(!names.includes(other), `${other} served by ${service}'s port`);
    }
  });
});
