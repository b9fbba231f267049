import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { access, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createLocalRuntime, type LocalRuntime, type LocalRuntimeOptions } from "@corral/scheduler/runtime/local-runtime.ts";
import type { RuntimeHandle } from "@corral/scheduler/runtime/runtime-backend.ts";
import { createSeededRemote, killGroup, processTexts, waitForGroupGone, type SeededRemote } from "../agent/support/git-fixtures.ts";
import { seedAgentRun, waitFor } from "../agent-session/support.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import { argvAndEnviron, capturingLogger, groupMembers, isAlive, processesMentioning, uptimeTicks } from "./support/processes.ts";

const AGENT_MAIN = fileURLToPath(new URL("../../agent/src/main.ts", import.meta.url));

describe("local runtime", function () {
  this.timeout(60_000);
  let root: string;
  let fx: ControlPlaneFixture;
  let remote: SeededRemote;
  const runtimes: LocalRuntime[] = [];
  const handles: RuntimeHandle[] = [];
  const standbyChildren: ChildProcess[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-local-runtime-"));
    remote = await createSeededRemote(root);
    fx = await startControlPlaneFixture({ CORRAL_HEARTBEAT_INTERVAL: "500ms" });
  });
  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
    for (const child of standbyChildren.splice(0)) child.kill("SIGKILL");
    // Launched agents outlive their runtime. SIGTERM lets each cancel its attempt and stop its
    // step's process group (a SIGKILL would orphan the step); SIGKILL is the fallback.
    await Promise.all(
      handles.splice(0).map(async ({ pid }) => {
        try {
          process.kill(-pid!, "SIGTERM");
        } catch {
          return;
        }
        if (!(await waitForGroupGone(pid!, 20_000))) killGroup(pid);
      }),
    );
  });
  after(async () => {
    await fx?.close();
    // Every agent and wrapper these tests started names the work root in its environment.
    await waitFor(() => processesMentioning(root).length === 0, "no process left", 5000).catch(() => {});
    const leftovers = processesMentioning(root);
    for (const pid of leftovers) killGroup(pid);
    await rm(root, { recursive: true, force: true });
    assert.deepEqual(leftovers, [], "no process is left behind");
  });

  function runtime(options: Partial<LocalRuntimeOptions> & { warmAgents: number }, workRoot = join(root, "work")): LocalRuntime {
    const made = createLocalRuntime({
      workRoot,
      logger: capturingLogger().logger,
      agentEnv: { CORRAL_LOG_LEVEL: "debug", CORRAL_RECONNECT_INITIAL_DELAY: "50ms" },
      ...options,
    });
    runtimes.push(made);
    return made;
  }

  async function launch(rt: LocalRuntime, credential?: string, commandTemplate = "sleep 30") {
    const run = await seedAgentRun(fx.sql, { repositoryUrl: remote.url, agent: { commandTemplate, prompt: "wait" } });
    const handle = await rt.launch({ runId: run.runId, attempt: 1, credential: credential ?? run.token, controlPlaneUrl: fx.url, limits: {}, timeouts: { runMs: 60_000, graceMs: 1000 } });
    handles.push(handle);
    return { run, handle };
  }

  const readyStandbys = (rt: LocalRuntime, count: number) =>
    waitFor(() => rt.standbyAgents().filter((s) => s.ready).length === count, `${count} ready standby agents`, 30_000);

  const attachedAt = async (runId: string) =>
    (await fx.sql.one<{ attached_at: string | null }>("select attached_at from attempts where run_id = ?", [runId]))?.attached_at ?? null;

  const waitAttached = (runId: string) => waitFor(async () => (await attachedAt(runId)) !== null, "the agent to attach", 30_000);

  describe("warm pool", () => {
    it("launches on a standby agent started before the launch, which attaches, and refills the pool", async () => {
      const rt = runtime({ warmAgents: 2 });
      await readyStandbys(rt, 2);
      const before = rt.standbyAgents();
      const launchedAt = uptimeTicks();
      const { run, handle } = await launch(rt);

      const standby = before.find((s) => s.pid === handle.pid);
      assert.ok(standby, `pid ${handle.pid} was not one of the standby agents ${JSON.stringify(before)}`);
      assert.equal(handle.startTime, standby.startTime);
      assert.ok(handle.startTime! < launchedAt, "the OS says the process started before the launch");
      assert.match(handle.exitFile!, /\/\.pool\/[0-9a-f-]+\.exit$/);
      await waitAttached(run.runId);
      assert.equal((await rt.observe(run.runId, 1, handle)).fact, "running");
      // The run's log is where a cold agent's would be, and it is this agent's.
      assert.match(await readFile(join(root, "work", run.runId, "1.agent.log"), "utf8"), new RegExp(`"runId":"${run.runId}"`));

      await readyStandbys(rt, 2);
      const refilled = rt.standbyAgents();
      assert.ok(!refilled.some((s) => s.pid === handle.pid), "the launched agent left the pool");
      assert.equal(refilled.filter((s) => before.some((b) => b.pid === s.pid)).length, 1, "one new standby agent replaced the taken one");
    });

    it("starts the agent at launch (cold) when the pool is disabled", async () => {
      const rt = runtime({ warmAgents: 0 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(rt.standbyAgents(), []);
      assert.deepEqual(processesMentioning(join(root, "work", ".pool")), [], "no standby agent was started");
      const launchedAt = uptimeTicks();
      const { run, handle } = await launch(rt);

      assert.ok(handle.startTime! >= launchedAt - 1, "the process started at the launch");
      assert.equal(handle.exitFile, join(root, "work", run.runId, "1.exit"));
      const wrapperEnv = argvAndEnviron(handle.pid!).environ.split("\0");
      assert.ok(wrapperEnv.includes(`CORRAL_RUN_ID=${run.runId}`), "a cold agent learns its run from the environment");
      assert.ok(!wrapperEnv.includes("CORRAL_AGENT_STANDBY=1"));
      await waitAttached(run.runId);
    });

    it("falls back to a cold start while no standby agent is ready", async () => {
      const rt = runtime({ warmAgents: 1 });
      const { run, handle } = await launch(rt);
      assert.equal(handle.exitFile, join(root, "work", run.runId, "1.exit"), "launched cold");
      await waitAttached(run.runId);
      await readyStandbys(rt, 1);
    });

    it("replaces a standby agent that dies", async () => {
      const { logger, records } = capturingLogger();
      const rt = runtime({ warmAgents: 1, logger, warmPool: { restartBackoff: { initialMs: 100, maxMs: 1000 } } });
      await readyStandbys(rt, 1);
      const [dead] = rt.standbyAgents();
      // The agent itself, not its wrapper: the wrapper records the death and exits.
      const agentPid = groupMembers(dead!.pid).find((pid) => pid !== dead!.pid)!;
      process.kill(agentPid, "SIGKILL");

      await waitFor(() => rt.standbyAgents().some((s) => s.ready && s.pid !== dead!.pid), "a replacement standby agent", 30_000);
      assert.equal(rt.standbyAgents().length, 1);
      assert.ok(!isAlive(dead!.pid));
      const died = records().find((r) => r.msg === "standby agent died; replacing it after a backoff");
      assert.equal(died?.detail, "the agent process was killed by SIGKILL");
    });

    it("backs off while standby agents keep dying, instead of spinning", async () => {
      const starts = join(root, "starts");
      const { logger, records } = capturingLogger();
      const rt = runtime({
        warmAgents: 2,
        logger,
        agentCommand: ["/bin/sh", "-c", `echo start >> '${starts}'; echo 'boom: no such agent' >&2; exit 3`],
        warmPool: { restartBackoff: { initialMs: 100, maxMs: 400 } },
      });
      await new Promise((resolve) => setTimeout(resolve, 2500));
      await rt.close();
      const count = (await readFile(starts, "utf8")).split("\n").filter(Boolean).length;
      // Two at once, then after 100, 400 (twice 200 capped), then every 400 ms: about 12 in 2.5 s.
      // Without the backoff these shells restart within milliseconds: hundreds.
      assert.ok(count >= 6 && count <= 20, `${count} starts in 2.5 s`);
      const died = records().filter((r) => r.msg === "standby agent died; replacing it after a backoff");
      assert.ok(died.length >= count - 2);
      assert.equal(died[0]?.detail, "the agent process exited with code 3");
      assert.match(String(died[0]?.logTail), /boom: no such agent/, "the log tail says why");
      assert.deepEqual(rt.standbyAgents(), []);
    });

    it("close() stops idle standby agents and leaves launched ones running", async () => {
      const rt = runtime({ warmAgents: 2 });
      await readyStandbys(rt, 2);
      const { run, handle } = await launch(rt);
      await waitAttached(run.runId);
      const idle = rt.standbyAgents().map((s) => s.pid);
      assert.ok(idle.length > 0);
      await rt.close();
      for (const pid of idle) assert.deepEqual(groupMembers(pid), [], `standby agent ${pid} was stopped`);
      assert.ok(groupMembers(handle.pid!).length >= 2, "the launched agent and its wrapper still run");
    });
  });

  it("never puts the credential in any process's argv or environment, warm or cold", async () => {
    for (const warmAgents of [1, 0]) {
      const rt = runtime({ warmAgents }, join(root, `work-${warmAgents}`));
      if (warmAgents) await readyStandbys(rt, 1);
      const run = await seedAgentRun(fx.sql, { repositoryUrl: remote.url, agent: { commandTemplate: "sleep 30", prompt: "wait" } });
      const handle = await rt.launch({ runId: run.runId, attempt: 1, credential: run.token, controlPlaneUrl: fx.url, limits: {}, timeouts: { runMs: 60_000, graceMs: 1000 } });
      handles.push(handle);
      assert.equal(handle.exitFile!.includes("/.pool/"), warmAgents === 1);
      // Attached means the agent read and used the credential; its process is still there.
      await waitAttached(run.runId);

      const members = groupMembers(handle.pid!);
      assert.ok(members.length >= 2, "the wrapper and the agent are scanned");
      for (const pid of members) {
        const { argv, environ } = argvAndEnviron(pid);
        assert.ok(argv.length > 0 && environ.length > 0, `could read /proc/${pid}`);
        assert.ok(!argv.includes(run.token), `the credential is in the argv of ${pid}`);
        assert.ok(!environ.includes(run.token), `the credential is in the environment of ${pid}`);
      }
      assert.ok(!processTexts().includes(run.token), "no process on the machine shows the credential");
      const log = await readFile(join(root, `work-${warmAgents}`, run.runId, "1.agent.log"), "utf8");
      assert.ok(log.includes(run.runId) && !log.includes(run.token), "the agent's log names the run, never the credential");
    }
  });

  it("after a restart, recognises warm-launched agents by pid and start time, ignores a recycled pid, and reads their exit status", async () => {
    const before = runtime({ warmAgents: 2 });
    await readyStandbys(before, 2);
    const good = await launch(before);
    const refused = await launch(before, "corral_att_not-the-right-token");
    for (const { handle } of [good, refused]) assert.match(handle.exitFile!, /\/\.pool\//, "both launched warm");
    await waitAttached(good.run.runId);
    await before.close(); // the scheduler stops; launched agents carry on

    const after = runtime({ warmAgents: 0 });
    assert.deepEqual(await after.observe(good.run.runId, 1, good.handle), { fact: "running", detail: "" });
    const recycled = { ...good.handle, startTime: good.handle.startTime! + 1 };
    assert.deepEqual(await after.observe(good.run.runId, 1, recycled), { fact: "missing", detail: "the agent process is gone" });
    const { startTime: _, ...withoutStartTime } = good.handle;
    assert.equal((await after.observe(good.run.runId, 1, withoutStartTime)).fact, "missing", "a bare pid proves nothing");
    // A recycled pid is not signalled either.
    await after.terminate(recycled, 0);
    assert.ok(isAlive(good.handle.pid!));

    // The refused agent exits 1 on its own; its wrapper recorded that in the pool's directory.
    await waitFor(() => !isAlive(refused.handle.pid!), "the refused agent to exit", 30_000);
    assert.deepEqual(await after.observe(refused.run.runId, 1, refused.handle), { fact: "failed", detail: "the agent process exited with code 1" });

    // SIGTERM: the agent cancels its attempt, completes, exits 0, and the wrapper records it.
    await after.terminate(good.handle, 20_000);
    await waitFor(async () => (await after.observe(good.run.runId, 1, good.handle)).fact !== "running", "the agent to end", 30_000);
    assert.deepEqual(await after.observe(good.run.runId, 1, good.handle), { fact: "succeeded", detail: "" });
    assert.equal((await readFile(good.handle.exitFile!, "utf8")).trim(), "0");

    await after.cleanup(good.run.runId, 1, good.handle);
    await assert.rejects(access(good.handle.exitFile!), "cleanup removes the exit file");
  });

  it("finds an agent whose handle never reached the database (a scheduler stopped right after the launch), warm or cold", async () => {
    const before = runtime({ warmAgents: 1 });
    await readyStandbys(before, 1);
    const warm = await launch(before, undefined, "true");
    const cold = await launch(before, undefined, "true");
    assert.match(warm.handle.exitFile!, /\/\.pool\//, "launched warm");
    assert.doesNotMatch(cold.handle.exitFile!, /\/\.pool\//, "launched cold");
    await before.close();

    const after = runtime({ warmAgents: 0 });
    for (const { run, handle } of [warm, cold]) {
      assert.equal((await after.observe(run.runId, 1, null)).fact, "running", "alive, found without the recorded handle");
      await waitFor(async () => (await after.observe(run.runId, 1, null)).fact !== "running", "the agent to end", 60_000);
      assert.deepEqual(await after.observe(run.runId, 1, null), { fact: "succeeded", detail: "" }, "its exit status, from the exit file the kept handle names");
      await after.cleanup(run.runId, 1, null);
      await assert.rejects(access(handle.exitFile!), "cleanup removes the exit file the kept handle names");
      assert.deepEqual(await after.observe(run.runId, 1, null), { fact: "missing", detail: "the agent process was never started" }, "and the kept handle");
    }
  });

  it("standby agents of a scheduler that dies exit on their own, and the next one sweeps their files", async () => {
    const workRoot = join(root, "work-crash");
    const host = spawn(process.execPath, [fileURLToPath(new URL("./support/pool-host.ts", import.meta.url)), workRoot], { stdio: ["ignore", "pipe", "inherit"] });
    standbyChildren.push(host);
    const line = await new Promise<string>((resolve, reject) => {
      host.stdout!.setEncoding("utf8").once("data", resolve);
      host.once("exit", () => reject(new Error("the pool host exited")));
    });
    const pids = JSON.parse(line) as number[];
    assert.equal(pids.length, 2);
    host.kill("SIGKILL"); // no close(): a crash

    // Their stdin ends with the scheduler, so they stop waiting for an assignment.
    await waitFor(() => pids.every((pid) => groupMembers(pid).length === 0), "the orphaned standby agents to exit", 15_000);
    const orphans = await readdir(join(workRoot, ".pool"));
    assert.equal(orphans.filter((name) => name.endsWith(".exit")).length, 2, "their wrappers recorded the exits");

    const next = runtime({ warmAgents: 1 }, workRoot);
    await readyStandbys(next, 1);
    const left = await readdir(join(workRoot, ".pool"));
    assert.deepEqual(left.filter((name) => orphans.includes(name)), [], "the orphans' logs and exit files are gone");
  });

  describe("a standby agent", () => {
    /** The agent in standby mode, as the pool starts it; resolves once it said ready. */
    async function standbyAgent(env: Record<string, string> = {}) {
      const child = spawn(process.execPath, [AGENT_MAIN], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", CORRAL_AGENT_STANDBY: "1", CORRAL_AGENT_READY_FD: "3", ...env },
        stdio: ["pipe", "ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
      standbyChildren.push(child);
      child.stdin!.on("error", () => {});
      const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
      const ready = await new Promise<string>((resolve) => {
        let said = "";
        (child.stdio[3] as Readable).setEncoding("utf8").on("data", (text: string) => (said += text)).once("end", () => resolve(said));
      });
      return { child, ready, exited, stderr: () => stderr };
    }

    it("says ready, then exits 2 naming each bad field of the assignment, without quoting it", async () => {
      const agent = await standbyAgent();
      assert.equal(agent.ready, "ready\n");
      const secret = `corral_att_${randomUUID()}`;
      agent.child.stdin!.end(`${JSON.stringify({ runId: "nope", attempt: 0, credential: `${secret} x`, workDir: "relative", controlPlaneUrl: "ftp://x" })}\n`);
      assert.equal(await agent.exited, 2);
      const stderr = agent.stderr();
      assert.match(stderr, /^corral-agent: invalid configuration:/m);
      assert.match(stderr, /assignment\.runId: expected a run id \(uuid\)/);
      assert.match(stderr, /assignment\.attempt: expected a positive integer/);
      assert.match(stderr, /assignment\.workDir: expected an absolute path/);
      assert.match(stderr, /assignment\.controlPlaneUrl: expected an http:\/\/ or https:\/\/ URL/);
      assert.ok(!stderr.includes(secret));
    });

    it("exits 2 on an assignment that is not JSON, without quoting it, and on a missing field or work dir", async () => {
      const secret = `corral_att_${randomUUID()}`;
      const notJson = await standbyAgent();
      notJson.child.stdin!.end(`{"credential":"${secret}"\n`);
      assert.equal(await notJson.exited, 2);
      assert.match(notJson.stderr(), /stdin: the assignment is not valid JSON/);
      assert.ok(!notJson.stderr().includes(secret));

      const missing = await standbyAgent();
      missing.child.stdin!.end(`${JSON.stringify({ runId: randomUUID(), attempt: 1, workDir: root, controlPlaneUrl: "http://127.0.0.1:1" })}\n`);
      assert.equal(await missing.exited, 2);
      assert.match(missing.stderr(), /assignment\.credential: required/);

      const noDir = await standbyAgent();
      noDir.child.stdin!.end(`${JSON.stringify({ runId: randomUUID(), attempt: 1, credential: secret, workDir: join(root, "absent"), controlPlaneUrl: "http://127.0.0.1:1" })}\n`);
      assert.equal(await noDir.exited, 2);
      assert.match(noDir.stderr(), /assignment\.workDir: cannot enter .*absent: ENOENT/);
    });

    it("exits 2 when stdin ends without an assignment (its runtime went away)", async () => {
      const agent = await standbyAgent();
      agent.child.stdin!.end();
      assert.equal(await agent.exited, 2);
      assert.match(agent.stderr(), /stdin: no assignment on the first line of stdin/);
    });

    it("refuses a credential file in standby mode, before saying ready", async () => {
      const file = join(root, "credential");
      await writeFile(file, "token\n");
      const agent = await standbyAgent({ CORRAL_CREDENTIAL_FILE: file });
      assert.equal(agent.ready, "", "not ready");
      assert.equal(await agent.exited, 2);
      assert.match(agent.stderr(), /CORRAL_CREDENTIAL_FILE: not used in standby mode/);
    });
  });
});
