import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { RunnerService } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { RunService, RunStatus, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { startArtifact, type ArtifactServer } from "@corral/artifact/start-artifact.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { startControlPlane, type ControlPlane } from "@corral/control-plane/start-control-plane.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createSql } from "@corral/plumbing/db/sql.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { startScheduler, type Scheduler } from "@corral/scheduler/start-scheduler.ts";
import { agentJob } from "@corral/scheduler/runtime/kubernetes/sandbox-manifests.ts";
import { createGitEnvironment } from "../../agent/src/pipeline/git.ts";
import { createSeededRemote, processTexts, useTempDirs } from "../agent/support/git-fixtures.ts";
import { startGitHttpServer, type GitHttpServer } from "../agent/support/git-http-server.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

const SERVICE_TOKEN = `svc-${randomBytes(24).toString("hex")}`;
const GIT_USER = "x-access-token";

/** Every log record of one service, as written. */
function capture(lines: string[]) {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString("utf8"));
      done();
    },
  });
}

/** Every regular file under `dir` (a missing dir is empty), with its bytes. */
async function filesUnder(dir: string): Promise<{ path: string; bytes: Buffer }[]> {
  const found: { path: string; bytes: Buffer }[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    try {
      found.push({ path, bytes: await readFile(path) });
    } catch {
      // removed while we looked
    }
  }
  return found;
}

/**
 * A full run on the real stack (scheduler, control plane, artifact service, a real agent
 * process through the local runtime) that clones and pushes over git smart HTTP with a token,
 * then a search for the attempt credential and the git token everywhere a secret could end up.
 */
describe("secret hygiene of a full run", function () {
  this.timeout(180_000);
  const tempDir = useTempDirs();
  const logs = new Map<string, string[]>();
  let database: TestDatabase;
  let artifact: ArtifactServer;
  let controlPlane: ControlPlane;
  let scheduler: Scheduler;
  let git: GitHttpServer;
  let workRoot: string;
  let corralHome: string;
  let captureDir: string;
  const agentMain = fileURLToPath(import.meta.resolve("@corral/agent/main.ts"));
  const gitToken = `ghs_${randomBytes(18).toString("base64url")}`;

  const logger = (name: string) => {
    const lines: string[] = [];
    logs.set(name, lines);
    return createLogger({ name, level: "trace", destination: capture(lines) });
  };

  before(async () => {
    database = await createTestDatabase();
    const root = await tempDir("secret-hygiene");
    workRoot = join(root, "work");
    corralHome = join(root, "corral-home");
    captureDir = await mkdtemp(join(tmpdir(), "corral-capture-"));
    await chmod(root, 0o755);
    await createSeededRemote(root, "repos/app.git");
    git = await startGitHttpServer({ projectRoot: join(root, "repos"), username: GIT_USER, password: gitToken, env: createGitEnvironment(join(root, ".home")) });

    artifact = await startArtifact(
      loadConfig(artifactConfig, {
        DATABASE_URL: database.url,
        CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
        CORRAL_ARTIFACT_DIR: join(root, "artifacts"),
        CORRAL_ARTIFACT_SERVICE_TOKEN: SERVICE_TOKEN,
        CORRAL_LOG_LEVEL: "trace",
      }),
      logger("artifact"),
    );
    controlPlane = await startControlPlane(
      loadConfig(controlPlaneConfig, {
        DATABASE_URL: database.url,
        CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
        CORRAL_ARTIFACT_URL: artifact.server.url,
        CORRAL_LOG_LEVEL: "trace",
        CORRAL_GIT_URL_PREFIX: git.baseUrl,
        CORRAL_GIT_USERNAME: GIT_USER,
        CORRAL_GIT_TOKEN: gitToken,
      }),
      logger("control-plane"),
    );
    // The agent reads its credential from stdin: a wrapper keeps a copy (outside the work root) so it can be searched for.
    const wrapper = join(captureDir, "agent.sh");
    await writeFile(
      wrapper,
      `#!/bin/sh\nIFS= read -r credential\nprintf '%s\\n' "$credential" > '${captureDir}/credential'\nprintf '%s\\n' "$credential" | exec '${process.execPath}' '${agentMain}'\n`,
      { mode: 0o755 },
    );
    scheduler = await startScheduler(
      loadConfig(schedulerConfig, {
        DATABASE_URL: database.url,
        CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0",
        CORRAL_CONTROL_PLANE_URL: controlPlane.server.url,
        CORRAL_WORK_ROOT: workRoot,
        CORRAL_LOCAL_WARM_AGENTS: "0",
        CORRAL_AGENT_COMMAND: wrapper,
        CORRAL_COMPLETION_WAIT: "1s",
        CORRAL_RECONCILE_INTERVAL: "500ms",
        CORRAL_LOG_LEVEL: "trace",
      }),
      logger("scheduler"),
      { agentEnv: { CORRAL_HOME: corralHome, CORRAL_LOG_LEVEL: "trace" } },
    );
  });

  after(async () => {
    await scheduler?.close(1000);
    await controlPlane?.close(1000);
    await artifact?.close(1000);
    await git?.close();
    await database?.drop();
    await rm(captureDir, { recursive: true, force: true });
  });

  it("leaves neither the attempt credential nor the git token in logs, events, artifacts, environments, files, manifests or errors", async () => {
    const client = createClient(RunService, createGrpcTransport({ baseUrl: scheduler.server.url }));
    const artifacts = createClient(ArtifactService, createGrpcTransport({ baseUrl: artifact.server.url }));
    const errors: string[] = [];
    const texts: { where: string; text: string | Buffer }[] = [];

    // A pipeline that tries to see secrets: its environment, git's configuration, its home,
    // credential files; and that writes an artifact.
    const command = [
      "env | sort",
      "git config --list --show-origin || true",
      "ls -la ~ .git || true",
      "cat ~/.git-credentials .git/config 2>/dev/null || true",
      "sleep 1",
      "mkdir -p out && env > out/env.txt && echo done >> NOTES.md",
    ].join("; ");
    const { run } = await client.submitRun({
      spec: {
        repositoryUrl: `${git.baseUrl}app.git`,
        baseRef: "main",
        agent: { commandTemplate: command, prompt: "look for secrets" },
        validationSteps: [{ name: "printenv", command: "printenv; git remote -v" }],
        artifactGlobs: ["out/**"],
        commit: { message: "notes" },
      },
    });
    const runId = run!.id;

    // While the run goes: the environment and argv of every process (the agent's and its steps').
    let done = false;
    const sampled: string[] = [];
    const sampler = (async () => {
      while (!done) {
        sampled.push(processTexts());
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    let final: Run | undefined;
    let lastEvent = 0n;
    for await (const message of client.watchRun({ runId })) {
      if (message.update.case === "run") final = message.update.value;
      else if (message.update.case === "event") lastEvent = message.update.value.event?.sequence ?? lastEvent;
      texts.push({ where: "WatchRun", text: JSON.stringify(message, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)) });
    }
    done = true;
    await sampler;
    assert.equal(final?.status, RunStatus.COMPLETED, `the run did not complete: ${final?.reason}`);
    assert.ok(lastEvent > 0n);
    const credential = (await readFile(join(captureDir, "credential"), "utf8")).trim();
    assert.match(credential, /^corral_att_/);
    // git used the token: the server saw it.
    assert.ok(git.authorizations.some((a) => a.includes(Buffer.from(`${GIT_USER}:${gitToken}`).toString("base64"))), "git never sent the token");

    for (const [i, text] of sampled.entries()) texts.push({ where: `processes (sample ${i})`, text });
    for (const [name, lines] of logs) texts.push({ where: `${name} log`, text: lines.join("") });
    const sql = createSql(scheduler.database.orm);
    for (const row of await sql.all<{ payload: Buffer; sequence: string }>("select payload, sequence from events where run_id = ?", [runId])) {
      texts.push({ where: `event ${row.sequence}`, text: row.payload });
    }
    for (const row of await sql.all<Record<string, unknown>>("select * from runs where id = ?", [runId])) texts.push({ where: "runs row", text: JSON.stringify(row) });
    for (const row of await sql.all<Record<string, unknown>>("select * from attempts where run_id = ?", [runId])) texts.push({ where: "attempts row", text: JSON.stringify(row) });

    const listed = await artifacts.list({ runId }, { headers: { authorization: `Bearer ${SERVICE_TOKEN}` } });
    assert.ok(listed.artifacts.some((a) => a.name.includes("env.txt")), `no env.txt among ${listed.artifacts.map((a) => a.name)}`);
    for (const a of listed.artifacts) {
      const chunks: Uint8Array[] = [];
      for await (const part of artifacts.download({ runId, name: a.name }, { headers: { authorization: `Bearer ${SERVICE_TOKEN}` } })) chunks.push(part.data);
      texts.push({ where: `artifact ${a.name}`, text: Buffer.concat(chunks) });
    }
    for (const dir of [workRoot, corralHome]) for (const file of await filesUnder(dir)) texts.push({ where: file.path, text: file.bytes });

    // The Job the kubernetes backend would write for this attempt.
    const job = agentJob(
      { namespace: "runs", image: "corral-agent:test", imagePullSecrets: [], ttlSecondsAfterFinished: 600, defaults: { cpuMillis: 1000, memoryBytes: 2 ** 31, diskBytes: 2 ** 33 }, agentEnv: {} },
      { runId, attempt: 1, credential, controlPlaneUrl: controlPlane.server.url, limits: {}, timeouts: { runMs: 3_600_000, graceMs: 10_000 } },
    );
    texts.push({ where: "kubernetes Job", text: JSON.stringify(job) });

    // Errors the APIs give about this run, with and without its (now revoked) credential.
    const wrong = { headers: { authorization: `Bearer ${credential}` } };
    const collect = async (what: string, call: () => Promise<unknown>) => {
      try {
        await call();
      } catch (error) {
        errors.push(`${what}: ${(error as Error).message}`);
      }
    };
    await collect("Stat with the revoked credential", () => artifacts.stat({ runId, name: "out/env.txt" }, wrong));
    await collect("List with the revoked credential", () => artifacts.list({ runId }, wrong));
    await collect("Download of a missing artifact", () =>
      (async () => {
        for await (const _ of artifacts.download({ runId, name: "nope" }, { headers: { authorization: `Bearer ${SERVICE_TOKEN}` } }));
      })(),
    );
    await collect("CancelRun of a finished run", () => client.cancelRun({ runId }));
    await collect("GetRun of a credential", () => client.getRun({ runId: credential }));
    const runner = createClient(RunnerService, createGrpcTransport({ baseUrl: controlPlane.server.url }));
    await collect("Attach with the revoked credential", async () => {
      for await (const _ of runner.attach(
        (async function* () {
          yield { message: { case: "hello" as const, value: { runId, attempt: 1, credential, protocolMin: 1, protocolMax: 2 } } };
        })(),
      ));
    });
    assert.ok(errors.length >= 5, `expected refusals, got ${errors}`);
    texts.push({ where: "API errors", text: errors.join("\n") });

    const leaks: string[] = [];
    for (const { where, text } of texts) {
      const haystack = typeof text === "string" ? text : text.toString("latin1");
      for (const [name, secret] of [
        ["the attempt credential", credential],
        ["the git token", gitToken],
      ] as const) {
        if (haystack.includes(secret)) leaks.push(`${name} in ${where}: …${haystack.slice(Math.max(0, haystack.indexOf(secret) - 120), haystack.indexOf(secret))}<secret>…`);
      }
    }
    assert.deepEqual(leaks, []);
    // The search looked where the secrets could have been: logs and files were not empty.
    assert.ok(logs.get("scheduler")!.length > 0 && logs.get("control-plane")!.length > 0 && logs.get("artifact")!.length > 0);
    assert.ok(sampled.some((t) => t.includes(agentMain)), "the process samples never saw the agent running");
    assert.ok(sampled.some((t) => t.includes("sleep\u00001")), "the process samples never saw the agent's step running");
    assert.ok(texts.some((t) => t.where.startsWith("event") && t.text.includes("PATH=")), "the steps' output (env) is not among the events searched");
    assert.ok(texts.some((t) => t.where.endsWith(".agent.log")), `no agent log among ${texts.map((t) => t.where).filter((w) => w.startsWith("/"))}`);
  });
});
