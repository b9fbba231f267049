import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { startControlPlane, type ControlPlane } from "@corral/control-plane/start-control-plane.ts";
import { createSeededRemote } from "../agent/support/git-fixtures.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { startSwitchingProxy, type SwitchingProxy } from "../support/switching-proxy.ts";
import { settle, startArtifactService, startChaosScheduler, statusName, storedEvents, waitFor, type ArtifactServiceFixture, type ChaosScheduler } from "./support/chaos-stack.ts";

const LINES = 20_000;

/**
 * A partition: two control-plane replicas behind a proxy (a Service); the agent's connection
 * to replica A is cut on the agent's side only, so A still believes it holds the stream, and
 * the proxy now sends new connections to replica B. The agent must reattach to B, B's higher
 * lease epoch must fence A's stream off (through PostgreSQL, not A's timers: its lease is long),
 * and the run must complete with every event stored once.
 */
describe("chaos: partition a control-plane replica from its stream", function () {
  this.timeout(180_000);
  let database: TestDatabase;
  let dir: string;
  let artifacts: ArtifactServiceFixture;
  let replicaA: ControlPlane;
  let replicaB: ControlPlane;
  let proxy: SwitchingProxy;
  let scheduler: ChaosScheduler;

  before(async () => {
    database = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), "corral-partition-"));
    artifacts = await startArtifactService(database.url);
    const replica = (name: string) =>
      startControlPlane(
        loadConfig(controlPlaneConfig, {
          DATABASE_URL: database.url,
          CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
          CORRAL_ARTIFACT_URL: artifacts.url,
          CORRAL_HEARTBEAT_INTERVAL: "1s",
          CORRAL_LEASE_DURATION: "60s",
          CORRAL_MAX_EVENT_PAYLOAD_BYTES: "256",
          CORRAL_MAX_EVENTS_PER_SECOND: "100000",
          CORRAL_MAX_EVENTS_BURST: "100000",
        }),
        createLogger({ name, level: process.env.TEST_LOG_LEVEL ?? "silent" }),
      );
    replicaA = await replica("control-plane-a");
    replicaB = await replica("control-plane-b");
    proxy = await startSwitchingProxy({ host: "127.0.0.1", port: replicaA.server.port });
    scheduler = await startChaosScheduler({ databaseUrl: database.url, controlPlaneUrl: proxy.url });
  });
  after(async () => {
    await scheduler?.close();
    await proxy?.close();
    await replicaA?.close(100);
    await replicaB?.close(100);
    await artifacts?.close();
    await database?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("reattaches to the other replica, fences the old stream by its epoch, and completes", async () => {
    const remote = await createSeededRemote(dir);
    const command = `for b in $(seq 0 19); do seq -f '%063g' $((b*1000+1)) $((b*1000+1000)); sleep 0.25; done`;
    const expected = execFileSync("sh", ["-c", command.replaceAll("sleep 0.25", "true")], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(expected.length, LINES * 64);
    const { run } = await scheduler.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: `${command}; echo done >> README.md`, prompt: "talk" } },
    });
    const runId = run!.id;
    const count = async () => Number((await scheduler.sql.one<{ n: string }>("select count(*) as n from events where run_id = ?", [runId]))!.n);
    await waitFor(async () => ((await count()) >= 3000 ? true : undefined), "3000 events stored via replica A");
    assert.equal(replicaA.registry.size, 1, "replica A holds the stream");
    assert.equal(replicaB.registry.size, 0);

    proxy.retarget({ host: "127.0.0.1", port: replicaB.server.port });
    const cut = performance.now();
    proxy.partition();
    await waitFor(async () => (replicaB.registry.size === 1 ? true : undefined), "the agent attached to replica B", 30_000);
    const reattachedMs = performance.now() - cut;
    await waitFor(async () => (replicaA.registry.size === 0 ? true : undefined), "replica A's stream fenced off", 30_000);
    const fencedMs = performance.now() - cut;

    const finished = await settle(scheduler.client, runId, 120_000);
    const stored = await storedEvents(scheduler.sql, runId);
    const lease = await scheduler.sql.one<{ lease_epoch: string }>("select lease_epoch from attempts where run_id = ?", [runId]);
    console.log(
      `      partition: reattached to replica B ${Math.round(reattachedMs)} ms after the cut, replica A's stream fenced ${Math.round(fencedMs)} ms after it ` +
        `(its lease was 60 s); lease epoch ${lease!.lease_epoch}; ${stored.count} events, sequences ${stored.contiguous ? "contiguous" : "WITH GAPS"}; ` +
        `output bytes lost: ${expected.length - stored.stdout.length}; run ${statusName(finished.status)}`,
    );
    assert.equal(finished.status, RunStatus.COMPLETED, finished.reason);
    assert.equal(lease!.lease_epoch, "2", "one takeover: the epoch moved once");
    assert.ok(fencedMs < 10_000, "fenced by the takeover, not by A's lease running out");
    assert.ok(stored.contiguous, "sequences 1..N, each once");
    assert.ok(stored.stdout.equals(expected), "the step's output is stored byte for byte, once");
  });
});
