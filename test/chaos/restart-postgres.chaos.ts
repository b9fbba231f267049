import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from "@corral/plumbing/db/embedded-postgres.ts";
import { createSeededRemote } from "../agent/support/git-fixtures.ts";
import { freePort, startControlPlaneProcess, type ControlPlaneProcess } from "../support/control-plane-process.ts";
import { settle, startArtifactService, startChaosScheduler, statusName, storedEvents, waitFor, type ArtifactServiceFixture, type ChaosScheduler } from "./support/chaos-stack.ts";

const LINES = 30_000;
const DOWN_MS = 4000;

/**
 * R4: PostgreSQL itself is stopped mid-run and started again on the same port and data
 * directory (a dedicated embedded server, not the suite's shared one). The services must
 * recover on their own (pools reconnect, LISTEN reconnects, the agent resends from its outbox,
 * which holds, and spills, what could not be stored meanwhile); the run completes and every
 * event is stored once.
 */
describe("chaos R4: restart PostgreSQL mid-run", function () {
  this.timeout(300_000);
  let dir: string;
  let port: number;
  let postgres: EmbeddedPostgresServer | undefined;
  let controlPlane: ControlPlaneProcess;
  let artifacts: ArtifactServiceFixture;
  let scheduler: ChaosScheduler;
  const startPostgres = async () => {
    postgres = await startEmbeddedPostgres({ dataDir: join(dir, "pg"), port, database: "corral_r4" });
    return postgres.url;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-r4-"));
    // As root, PostgreSQL runs as the postgres user, which must enter the data directory's parent.
    await chmod(dir, 0o755);
    port = await freePort();
    const url = await startPostgres();
    artifacts = await startArtifactService(url);
    controlPlane = await startControlPlaneProcess(
      {
        DATABASE_URL: url,
        CORRAL_ARTIFACT_URL: artifacts.url,
        CORRAL_HEARTBEAT_INTERVAL: "1s",
        CORRAL_LEASE_DURATION: "20s",
        CORRAL_MAX_EVENT_PAYLOAD_BYTES: "256",
        CORRAL_MAX_EVENTS_PER_SECOND: "100000",
        CORRAL_MAX_EVENTS_BURST: "100000",
      },
      join(dir, "control-plane.log"),
    );
    scheduler = await startChaosScheduler({ databaseUrl: url, controlPlaneUrl: controlPlane.url });
  });
  after(async () => {
    await scheduler?.close().catch(() => undefined);
    await controlPlane?.close();
    await artifacts?.close();
    await postgres?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("recovers: the run completes and every event is stored once", async () => {
    const remote = await createSeededRemote(await mkdtemp(join(dir, "remote-")));
    // 30 bursts of 1,000 lines of 64 bytes, 0.4 s apart: output goes on while the database is away.
    const command = `for b in $(seq 0 29); do seq -f '%063g' $((b*1000+1)) $((b*1000+1000)); sleep 0.4; done`;
    const expected = execFileSync("sh", ["-c", command.replaceAll("sleep 0.4", "true")], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(expected.length, LINES * 64);
    const { run } = await scheduler.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: `${command}; echo done >> README.md`, prompt: "talk" } },
    });
    const runId = run!.id;
    const count = async () => Number((await scheduler.sql.one<{ n: string }>("select count(*) as n from events where run_id = ?", [runId]))!.n);
    await waitFor(async () => ((await count()) >= 5000 ? true : undefined), "5000 events stored", 120_000);

    const stoppedAt = performance.now();
    await postgres!.stop();
    postgres = undefined;
    await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
    await startPostgres();
    const backAt = performance.now();
    const before = await waitFor(() => count(), "the database answering again");
    await waitFor(async () => ((await count()) > before ? true : undefined), "events stored after the restart", 60_000);
    const storingAgainMs = performance.now() - backAt;

    const finished = await settle(scheduler.client, runId, 240_000);
    const stored = await storedEvents(scheduler.sql, runId);
    console.log(
      `      R4: PostgreSQL down ${Math.round(backAt - stoppedAt)} ms; events stored again ${Math.round(storingAgainMs)} ms after it was back; ` +
        `${stored.count} events, sequences 1..${stored.maxSequence} ${stored.contiguous ? "contiguous" : "WITH GAPS"}; ` +
        `output bytes lost: ${expected.length - stored.stdout.length}; run ${statusName(finished.status)}`,
    );
    assert.equal(finished.status, RunStatus.COMPLETED, finished.reason);
    assert.ok(stored.contiguous, "sequences 1..N, each once");
    assert.equal(stored.types.get("run.warning") ?? 0, 0, "no output was shed");
    assert.ok(stored.stdout.equals(expected), "the step's output is stored byte for byte, once");

    // And the services still work as a whole: a second run goes through, and a cancel (NOTIFY
    // from the scheduler, LISTEN in the control plane, both reconnected) still lands.
    const { run: second } = await scheduler.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: "sleep 600", prompt: "wait" } },
    });
    await waitFor(async () => ((await scheduler.client.getRun({ runId: second!.id })).run?.currentStep === "agent" ? true : undefined), "the second run's agent step");
    await scheduler.client.cancelRun({ runId: second!.id, reason: "after the restart" });
    const cancelled = await settle(scheduler.client, second!.id, 30_000);
    assert.equal(cancelled.status, RunStatus.CANCELLED, cancelled.reason);
  });
});
