import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createGitEnvironment } from "../../agent/src/pipeline/git.ts";
import { createSeededRemote, remoteBranch, type SeededRemote } from "../agent/support/git-fixtures.ts";
import { startGitHttpServer, type GitHttpServer } from "../agent/support/git-http-server.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import { seedAgentRun, storedCompletions, storedEvents, waitFor } from "./support.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const GIT_USERNAME = "x-access-token";
const GIT_TOKEN = "ghs_corral-agent-process-test-token-7c1e";

interface AgentProcess {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<number | null>;
}

describe("corral-agent process", () => {
  let root: string;
  const children: ChildProcess[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-agent-process-"));
  });
  after(() => rm(root, { recursive: true, force: true }));
  afterEach(() => {
    // A failed test must not leave an agent behind.
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });

  /** Starts agent/bin/corral-agent.js with a clean environment; `stdin` is written and closed (null: nothing, closed). */
  function startAgent(env: Record<string, string>, stdin: string | null): AgentProcess {
    const child = spawn(process.execPath, ["agent/bin/corral-agent.js"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: join(root, "home"), ...env },
      stdio: ["pipe", "ignore", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.stdin!.on("error", () => {}); // an agent that exits early closes its stdin
    child.stdin!.end(stdin ?? "");
    const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    return { child, stderr: () => stderr, exited };
  }

  const within = <T>(promise: Promise<T>, ms: number, what: string) =>
    Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref())]);

  describe("against a control plane and a git server", () => {
    let fx: ControlPlaneFixture;
    let git: GitHttpServer;
    let remote: SeededRemote;
    before(async () => {
      remote = await createSeededRemote(root, "repos/app.git");
      git = await startGitHttpServer({ projectRoot: join(root, "repos"), username: GIT_USERNAME, password: GIT_TOKEN, env: createGitEnvironment(join(root, ".home")) });
      // The control plane hands these credentials to agents whose repository is under the prefix.
      fx = await startControlPlaneFixture({ CORRAL_GIT_URL_PREFIX: git.baseUrl, CORRAL_GIT_USERNAME: GIT_USERNAME, CORRAL_GIT_TOKEN: GIT_TOKEN, CORRAL_HEARTBEAT_INTERVAL: "500ms" });
    });
    after(async () => {
      await fx?.close();
      await git?.close();
    });

    const agentEnv = (runId: string, extra: Record<string, string> = {}) => ({
      CORRAL_CONTROL_PLANE_URL: fx.url,
      CORRAL_RUN_ID: runId,
      CORRAL_ATTEMPT: "1",
      CORRAL_LOG_LEVEL: "debug",
      CORRAL_RECONNECT_INITIAL_DELAY: "50ms",
      ...extra,
    });

    it("runs the real pipeline, pushes the branch with the assignment's git credentials, and exits 0", async () => {
      const branch = "corral/process-test";
      const run = await seedAgentRun(fx.sql, {
        repositoryUrl: `${git.baseUrl}app.git`,
        baseRef: "main",
        branch,
        agent: { commandTemplate: "printf 'fixed\\n' >> README.md && echo edited", prompt: "Fix the README" },
        validationSteps: [{ name: "readme-fixed", command: "grep -q fixed README.md", timeout: durationFromMs(20_000) }],
        commit: { authorName: "Corral Bot", authorEmail: "bot@corral.dev", message: "Fix the README" },
      });
      const agent = startAgent(agentEnv(run.runId, { CORRAL_WORK_DIR: join(root, "work-1") }), `${run.token}\n`);
      const code = await within(agent.exited, 60_000, "the agent to exit");

      assert.equal(code, 0, agent.stderr());
      const [completion] = await storedCompletions(fx.sql, run.runId);
      assert.equal(completion?.status, "succeeded", completion?.reason ?? agent.stderr());
      assert.equal(completion?.result.branch, branch);
      assert.deepEqual(completion?.result.changedFiles, ["README.md"]);
      assert.equal(remoteBranch(root, remote.bare, branch), completion?.result.commitSha, "the branch is pushed at the reported commit");
      assert.ok(git.authorizations.some((a) => a.startsWith("Basic ")), "git authenticated with the assignment's credentials");

      const events = await storedEvents(fx.sql, run.runId);
      assert.deepEqual(events.map((e) => e.sequence), events.map((_, i) => i + 1));
      const finished = events.filter((e) => e.type === "step.finished").map((e) => `${e.payload.stepFinished?.name}:${e.payload.stepFinished?.outcome}`);
      assert.deepEqual(finished, ["clone", "agent", "readme-fixed", "commit", "push"].map((name) => `${name}:STEP_OUTCOME_SUCCEEDED`));
      const agentOutput = events.filter((e) => e.type === "log.chunk" && e.payload.logChunk?.step === "agent");
      assert.match(agentOutput.map((e) => Buffer.from(e.payload.logChunk!.data as string, "base64").toString()).join(""), /edited/);

      const stderr = agent.stderr();
      for (const line of stderr.trim().split("\n")) assert.doesNotThrow(() => JSON.parse(line), `not a JSON log line: ${line}`);
      assert.ok(!stderr.includes(run.token), "the attach credential is never logged");
      assert.ok(!stderr.includes(GIT_TOKEN), "the git token is never logged");
      assert.match(stderr, /"msg":"completion acknowledged; session stopped"/);
    });

    it("reads the credential from CORRAL_CREDENTIAL_FILE, and on SIGTERM cancels the run and still completes", async () => {
      const run = await seedAgentRun(fx.sql, { repositoryUrl: `${git.baseUrl}app.git`, agent: { commandTemplate: "sleep 30", prompt: "wait" } });
      const credentialFile = join(root, "credential");
      await writeFile(credentialFile, `${run.token}\n`, { mode: 0o600 });
      const agent = startAgent(agentEnv(run.runId, { CORRAL_CREDENTIAL_FILE: credentialFile }), null);
      await waitFor(async () => (await storedEvents(fx.sql, run.runId)).some((e) => e.type === "step.started" && e.payload.stepStarted?.name === "agent"), "the agent step", 30_000);
      agent.child.kill("SIGTERM");
      const code = await within(agent.exited, 30_000, "the agent to exit after SIGTERM");

      assert.equal(code, 0, agent.stderr());
      const [completion] = await storedCompletions(fx.sql, run.runId);
      assert.equal(completion?.status, "cancelled");
      const events = await storedEvents(fx.sql, run.runId);
      const agentStep = events.find((e) => e.type === "step.finished" && e.payload.stepFinished?.name === "agent");
      assert.equal(agentStep?.payload.stepFinished?.outcome, "STEP_OUTCOME_CANCELLED");
      assert.ok(events.some((e) => e.type === "run.warning" && e.payload.warning?.code === "agent_terminated"));
    });

    it("exits non-zero with a clear message when the control plane refuses the credential", async () => {
      const run = await seedAgentRun(fx.sql);
      const agent = startAgent(agentEnv(run.runId), "corral_att_not-the-right-token\n");
      const code = await within(agent.exited, 20_000, "the agent to exit");
      assert.equal(code, 1);
      assert.match(agent.stderr(), /^corral-agent: the control plane refused the attempt's credential/m);
      assert.ok(!agent.stderr().includes("corral_att_not-the-right-token"));
    });
  });

  describe("start-up configuration", () => {
    const RUN_ID = "7d0c7f4e-4a8e-4f8a-9a57-2f3b8e0c1d2e";

    it("exits 2 naming each bad variable", async () => {
      const agent = startAgent({ CORRAL_CONTROL_PLANE_URL: "ftp://example", CORRAL_ATTEMPT: "zero" }, "token\n");
      assert.equal(await within(agent.exited, 20_000, "exit"), 2);
      assert.match(agent.stderr(), /^corral-agent: invalid configuration:/m);
      assert.match(agent.stderr(), /CORRAL_CONTROL_PLANE_URL: expected an http:\/\/ or https:\/\/ URL/);
      assert.match(agent.stderr(), /CORRAL_RUN_ID: required/);
      assert.match(agent.stderr(), /CORRAL_ATTEMPT: /);
    });

    it("exits 2 when stdin carries no credential", async () => {
      const agent = startAgent({ CORRAL_CONTROL_PLANE_URL: "http://127.0.0.1:1", CORRAL_RUN_ID: RUN_ID }, null);
      assert.equal(await within(agent.exited, 20_000, "exit"), 2);
      assert.match(agent.stderr(), /stdin: no credential on the first line of stdin/);
    });

    it("exits 2 naming CORRAL_CREDENTIAL_FILE when it cannot be read", async () => {
      const agent = startAgent({ CORRAL_CONTROL_PLANE_URL: "http://127.0.0.1:1", CORRAL_RUN_ID: RUN_ID, CORRAL_CREDENTIAL_FILE: join(root, "missing") }, "ignored\n");
      assert.equal(await within(agent.exited, 20_000, "exit"), 2);
      assert.match(agent.stderr(), /CORRAL_CREDENTIAL_FILE: cannot read .*missing: ENOENT/);
    });
  });
});
