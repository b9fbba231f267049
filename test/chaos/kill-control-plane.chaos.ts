import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createSeededRemote } from "../agent/support/git-fixtures.ts";
import { startControlPlaneProcess, type ControlPlaneProcess } from "../support/control-plane-process.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { settle, startArtifactService, statusName, startChaosScheduler, storedEvents, waitFor, type ArtifactServiceFixture, type ChaosScheduler } from "./support/chaos-stack.ts";

const LINES = 100_000;
const KILLS = 5;

/**
 * R1: the control plane is killed with SIGKILL five times while a run streams 100,000 events.
 * Every event must be stored exactly once (sequences 1..N, the output byte for byte), and the
 * run must complete.
 */
describe("chaos R1: kill -9 the control plane during a run of 100k events", function () {
  this.timeout(300_000);
  let database: TestDatabase;
  let dir: string;
  let controlPlane: ControlPlaneProcess;
  let artifacts: ArtifactServiceFixture;
  let scheduler: ChaosScheduler;

  before(async () => {
    database = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), "corral-r1-"));
    artifacts = await startArtifactService(database.url);
    controlPlane = await startControlPlaneProcess(
      {
        DATABASE_URL: database.url,
        CORRAL_ARTIFACT_URL: artifacts.url,
        CORRAL_HEARTBEAT_INTERVAL: "1s",
        CORRAL_LEASE_DURATION: "20s",
        // 256-byte events make 64-byte log chunks: one event per 64-byte line of output.
        CORRAL_MAX_EVENT_PAYLOAD_BYTES: "256",
        CORRAL_MAX_EVENTS_PER_SECOND: "100000",
        CORRAL_MAX_EVENTS_BURST: "100000",
      },
      join(dir, "control-plane.log"),
    );
    scheduler = await startChaosScheduler({ databaseUrl: database.url, controlPlaneUrl: controlPlane.url });
  });
  let keep = false;
  afterEach(function () {
    keep ||= this.currentTest?.state === "failed";
  });
  after(async () => {
    await scheduler?.close(keep);
    await controlPlane?.close();
    await artifacts?.close();
    await database?.drop();
    // A failure keeps the control plane's log for a look.
    if (keep) console.log(`      R1: the control plane's log is kept in ${dir}, the agent's in ${scheduler?.workRoot}`);
    else await rm(dir, { recursive: true, force: true });
  });

  it("stores every event once and completes the run", async () => {
    const remote = await createSeededRemote(dir);
    // 100 bursts of 1,000 lines of 64 bytes, a tenth of a second apart.
    const command = `for b in $(seq 0 99); do seq -f '%063g' $((b*1000+1)) $((b*1000+1000)); sleep 0.1; done`;
    const expected = execFileSync("sh", ["-c", command.replaceAll("sleep 0.1", "true")], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(expected.length, LINES * 64);
    const { run } = await scheduler.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate: `${command}; echo done >> README.md`, prompt: "talk a lot" } },
    });
    const runId = run!.id;
    const count = async () => Number((await scheduler.sql.one<{ n: string }>("select count(*) as n from events where run_id = ?", [runId]))!.n);

    const downtimes: number[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      const mark = (kill * LINES) / (KILLS + 1);
      await waitFor(async () => ((await count()) >= mark ? true : undefined), `${mark} events stored`, 120_000);
      const before = await count();
      const killedAt = performance.now();
      await controlPlane.kill9();
      await controlPlane.start();
      // Down until the agent is back and storing: its outbox held everything meanwhile.
      await waitFor(async () => ((await count()) > before ? true : undefined), "events stored after the restart", 60_000);
      downtimes.push(performance.now() - killedAt);
    }

    const finished = await settle(scheduler.client, runId, 240_000);
    const stored = await storedEvents(scheduler.sql, runId);
    const lost = expected.length - stored.stdout.length;
    console.log(
      `      R1: ${KILLS} kill -9 of the control plane (${controlPlane.starts} processes); ${stored.count} events stored, sequences 1..${stored.maxSequence} ` +
        `${stored.contiguous ? "contiguous" : "WITH GAPS"}; ${stored.types.get("log.chunk")} log chunks; output bytes lost: ${lost}; ` +
        `down until storing again: ${downtimes.map((ms) => `${Math.round(ms)} ms`).join(", ")}; run ${statusName(finished.status)}`,
    );
    assert.equal(finished.status, RunStatus.COMPLETED, finished.reason);
    assert.ok(stored.count >= LINES, `at least ${LINES} events (${stored.count})`);
    assert.ok(stored.contiguous, "sequences 1..N, each once: nothing lost, nothing duplicated");
    assert.equal(stored.count, stored.maxSequence);
    assert.equal(stored.types.get("run.warning") ?? 0, 0, "no output was shed");
    assert.ok(stored.stdout.equals(expected), "the step's output is stored byte for byte, once");
  });
});
