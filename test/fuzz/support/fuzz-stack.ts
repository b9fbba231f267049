import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { RunnerService } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "@corral/contract/grpc/health/v1/health_pb.ts";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import { ARTIFACT_SERVICE_TOKEN } from "../../support/artifact-service.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../../support/control-plane.ts";
import { seedLaunchedRun, type SeededRun } from "../../support/seed-run.ts";
import { startSchedulerFixture, type SchedulerFixture } from "../../support/scheduler.ts";
import type { Dictionary } from "./arbitrary-message.ts";

export interface FuzzStack {
  sql: Sql;
  scheduler: SchedulerFixture;
  controlPlane: ControlPlaneFixture;
  artifactUrl: string;
  runs: Client<typeof RunService>;
  runner: Client<typeof RunnerService>;
  artifacts: Client<typeof ArtifactService>;
  /** The run whose credential the fuzzer holds. */
  own: SeededRun;
  /** Another run: nothing about it may be learned with any other credential. */
  victim: SeededRun;
  /** Every secret the stack knows: no error message may contain one. */
  secrets: string[];
  /** Every run id the stack knows: an error may name one only when the request did. */
  runIds: string[];
  dictionary: Dictionary;
  /** Authorization headers a client might send: none, garbage, its own, another run's, the service's. */
  authorizations: (string | undefined)[];
  /** Throws unless all three services answer their health check SERVING within a second. */
  assertHealthy(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The three services on one fresh database, on free ports. The scheduler admits nothing
 * (CORRAL_MAX_CONCURRENT_RUNS=0, no warm agents): a fuzzed SubmitRun that happens to be valid
 * is stored and queued, never launched.
 */
export async function startFuzzStack(): Promise<FuzzStack> {
  const controlPlane = await startControlPlaneFixture({ CORRAL_ATTACH_ATTEMPTS_PER_MINUTE: "100000000", CORRAL_LOG_LEVEL: "silent", CORRAL_LEASE_DURATION: "30s", CORRAL_HEARTBEAT_INTERVAL: "5s" });
  const scheduler = await startSchedulerFixture(
    { CORRAL_MAX_CONCURRENT_RUNS: "0", CORRAL_LOCAL_WARM_AGENTS: "0", CORRAL_CONTROL_PLANE_URL: controlPlane.url, CORRAL_RECONCILE_INTERVAL: "1h" },
    controlPlane.database,
  );
  const sql = controlPlane.sql;
  const own = await seedLaunchedRun(sql);
  const victim = await seedLaunchedRun(sql);
  const artifactUrl = controlPlane.artifacts!.url;
  const transport = (baseUrl: string) => createGrpcTransport({ baseUrl });
  const stranger = mintCredential().token;
  const secrets = [own.token, victim.token, ARTIFACT_SERVICE_TOKEN];
  const urls = [scheduler.url, controlPlane.url, artifactUrl];
  return {
    sql,
    scheduler,
    controlPlane,
    artifactUrl,
    runs: createClient(RunService, transport(scheduler.url)),
    runner: createClient(RunnerService, transport(controlPlane.url)),
    artifacts: createClient(ArtifactService, transport(artifactUrl)),
    own,
    victim,
    secrets,
    runIds: [own.runId, victim.runId],
    dictionary: { strings: [own.runId, victim.runId, own.token, victim.token, stranger, own.runId.toUpperCase(), `${victim.runId}/x`] },
    authorizations: [
      undefined,
      "Bearer",
      "Bearer garbage",
      "Basic dXNlcjpwYXNz",
      `Bearer ${stranger}`,
      `Bearer ${own.token}`,
      `Bearer ${own.token}x`,
      `bearer   ${victim.token}`,
      `Bearer ${ARTIFACT_SERVICE_TOKEN}`,
    ],
    async assertHealthy() {
      for (const url of urls) {
        const health = createClient(Health, transport(url));
        const response = await health.check({}, { timeoutMs: 1000 });
        if (response.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`${url} is not serving: ${response.status}`);
      }
    },
    async close() {
      await scheduler.close();
      await controlPlane.close();
    },
  };
}
