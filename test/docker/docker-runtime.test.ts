import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { MessageInitShape } from "@bufbuild/protobuf";
import Docker from "dockerode";
import { RunStatus, type SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { containerLabels, containerName } from "@corral/scheduler/runtime/docker/container-names.ts";
import { createDockerRuntime } from "@corral/scheduler/runtime/docker/docker-runtime.ts";
import { dockerSettings } from "@corral/scheduler/runtime/docker/docker-settings.ts";
import { engineAddress } from "@corral/scheduler/runtime/docker/engine-connection.ts";
import { isNotFound } from "@corral/scheduler/runtime/docker/engine-errors.ts";
import type { RuntimeFact } from "@corral/scheduler/runtime/runtime-backend.ts";
import { createSeededRemote, remoteBranch } from "../agent/support/git-fixtures.ts";
import { testAgentImage } from "../support/docker/agent-image.ts";
import { missingPodman, podman, sharedPodman, type PodmanService } from "../support/docker/podman.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { waitFor } from "../support/wait-for.ts";

const run = promisify(execFile);
const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

/**
 * The docker runtime end to end against podman's Docker-compatible API: the scheduler creates
 * a container per attempt from the agent image that deploy/docker/build-agent-image.sh builds
 * without a registry, the agent in it gets its credential on stdin, attaches to the real
 * control plane and pushes to a real bare repository.
 *
 * Agent containers use the host's network (CORRAL_DOCKER_NETWORK=host), so they reach the
 * control plane and artifact service on 127.0.0.1 as they listen in the tests; the
 * directory of the test's repositories is bind-mounted at the same path
 * (CORRAL_DOCKER_MOUNTS), so the run's file:// URL means the same inside.
 */
describe("docker runtime against podman", function () {
  this.timeout(120_000);
  let engine: PodmanService;
  let docker: Docker;
  let image: string;
  let reposRoot: string;
  let stack: StackFixture;
  const scopes: string[] = [];

  before(async function () {
    const missing = missingPodman();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    // A cold build of the agent image (debootstrap, Node, npm ci) takes about a minute.
    this.timeout(900_000);
    engine = await sharedPodman();
    docker = new Docker({ socketPath: engine.socketPath });
    image = await testAgentImage();
    reposRoot = await mkdtemp(join(tmpdir(), "corral-docker-repos-"));
    await chmod(reposRoot, 0o755);
    stack = await startDockerStack();
  });
  after(async () => {
    await stack?.close();
    for (const scope of scopes) await removeScope(scope);
    if (reposRoot) await rm(reposRoot, { recursive: true, force: true });
  });

  function dockerEnv(overrides: Record<string, string> = {}): Record<string, string> {
    const scope = `test-${randomBytes(4).toString("hex")}`;
    scopes.push(scope);
    return {
      CORRAL_RUNTIMES: "docker",
      CORRAL_DEFAULT_RUNTIME: "docker",
      CORRAL_DOCKER_HOST: engine.url,
      CORRAL_DOCKER_AGENT_IMAGE: image,
      CORRAL_DOCKER_NETWORK: "host",
      CORRAL_DOCKER_SCOPE: scope,
      CORRAL_DOCKER_MOUNTS: `${reposRoot}:${reposRoot}:rw`,
      CORRAL_DOCKER_DEFAULT_MEMORY: "512MiB",
      CORRAL_DOCKER_DEFAULT_CPU_MILLIS: "1000",
      ...overrides,
    };
  }

  function startDockerStack(overrides: Record<string, string> = {}): Promise<StackFixture> {
    return startStackFixture(dockerEnv(overrides));
  }

  /** Containers of a scope that a test left (a failed assertion, a stopped stack). */
  async function removeScope(scope: string): Promise<void> {
    const ids = (await podman(["ps", "-aq", "--filter", `label=corral.dev/scope=${scope}`], engine.env)).split("\n").filter(Boolean);
    if (ids.length > 0) await podman(["rm", "--force", ...ids], engine.env).catch(() => undefined);
  }

  async function submit(on: StackFixture, spec: Record<string, unknown>) {
    const root = await mkdtemp(join(reposRoot, "run-"));
    await chmod(root, 0o755);
    const remote = await createSeededRemote(root);
    // The agent runs as uid 10001, and git serves and updates only a repository its own user
    // owns ("dubious ownership"); this process (root) reads it through safe.directory.
    await run("chown", ["-R", "10001:10001", remote.bare]);
    await writeFile(join(root, ".home", ".gitconfig"), "[safe]\n\tdirectory = *\n");
    const { run: submitted } = await on.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", ...spec } as MessageInitShape<typeof SubmitRunRequestSchema>["spec"],
    });
    return { root, remote, runId: submitted!.id };
  }

  async function finished(on: StackFixture, runId: string, timeoutMs = 90_000) {
    return waitFor(
      async () => {
        const { run } = await on.client.getRun({ runId });
        return run && TERMINAL.includes(run.status) ? run : undefined;
      },
      `run ${runId} to end`,
      timeoutMs,
    );
  }

  const atStep = (on: StackFixture, runId: string, step: string) =>
    waitFor(async () => {
      const { run } = await on.client.getRun({ runId });
      if (run && TERMINAL.includes(run.status)) throw new Error(`run ${runId} ended before step ${step}: ${run.reason}`);
      return run?.currentStep === step ? true : undefined;
    }, `run ${runId} at step ${step}`);

  async function inspect(runId: string, attempt = 1) {
    return docker
      .getContainer(containerName(runId, attempt))
      .inspect()
      .catch((error: unknown) => {
        if (isNotFound(error)) return undefined;
        throw error;
      });
  }

  const gone = (runId: string) => waitFor(async () => ((await inspect(runId)) ? undefined : true), `the container of ${runId} to be removed`);

  it("runs a run in a container: the agent gets its credential on stdin, pushes the branch, and the container goes", async () => {
    const { root, remote, runId } = await submit(stack, {
      agent: { commandTemplate: "echo from-a-container > CONTAINER.md", prompt: "p" },
      validationSteps: [{ name: "file", command: "test -s CONTAINER.md && test \"$(id -u)\" = 10001" }],
      limits: { cpuMillis: 1500, memoryBytes: BigInt(768 * 1024 ** 2), pids: 300 },
    });
    const container = await waitFor(() => inspect(runId), "the container");
    assert.equal(container.Name.replace(/^\//, ""), containerName(runId, 1));
    assert.deepEqual(
      Object.fromEntries(Object.keys(containerLabels(runId, 1, scopes[0]!)).map((k) => [k, container.Config.Labels[k]])),
      containerLabels(runId, 1, scopes[0]!),
    );
    assert.equal(container.Config.User, "10001:10001");
    assert.equal(container.HostConfig.ReadonlyRootfs, true);
    assert.equal(container.HostConfig.Memory, 768 * 1024 ** 2);
    assert.equal(container.HostConfig.NanoCpus, 1_500_000_000);
    assert.equal(container.HostConfig.PidsLimit, 300);
    assert.equal(container.HostConfig.NetworkMode, "host");
    // The credential is nowhere in the container's configuration.
    const configuration = JSON.stringify(container);
    assert.doesNotMatch(configuration, /corral_att_/);
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.COMPLETED, run.reason);
    assert.equal(remoteBranch(root, remote.bare, run.result!.branch), run.result!.commitSha);
    await gone(runId);
  });

  it("reports a failing pipeline as failed, with the step named", async () => {
    const { runId } = await submit(stack, {
      agent: { commandTemplate: "echo change > CHANGE.md", prompt: "p" },
      validationSteps: [{ name: "tests", command: "echo 2 tests failed; exit 1" }],
    });
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.FAILED);
    assert.match(run.reason, /tests/);
    await gone(runId);
  });

  it("cancels: the agent stops within the grace; a frozen agent's container is killed", async () => {
    const polite = await submit(stack, { agent: { commandTemplate: "sleep 300", prompt: "p" } });
    await atStep(stack, polite.runId, "agent");
    await stack.client.cancelRun({ runId: polite.runId, reason: "changed my mind" });
    const cancelled = await finished(stack, polite.runId);
    assert.equal(cancelled.status, RunStatus.CANCELLED, cancelled.reason);
    assert.match(cancelled.reason, /stopped as asked/);
    await gone(polite.runId);

    // Frozen (SIGSTOP), the agent cannot honour the cancel: after the grace the scheduler has
    // the engine kill the container, and the run ends as cancelled all the same.
    const stuck = await submit(stack, { agent: { commandTemplate: "sleep 300", prompt: "p" }, timeouts: { grace: { seconds: 1n } } });
    await atStep(stack, stuck.runId, "agent");
    const pid = await agentPid(stuck.runId);
    process.kill(pid, "SIGSTOP");
    const started = Date.now();
    await stack.client.cancelRun({ runId: stuck.runId });
    const forced = await finished(stack, stuck.runId);
    assert.equal(forced.status, RunStatus.CANCELLED, forced.reason);
    assert.match(forced.reason, /sent no completion/);
    // The grace (1 s) and the reconciler's slack (5 s), well before the 300 s step would end.
    assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms`);
    await gone(stuck.runId);
  });

  it("fails a run whose step runs out of memory, with the reason", async () => {
    const { runId } = await submit(stack, {
      agent: { commandTemplate: "node -e 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1))'", prompt: "p" },
      limits: { memoryBytes: BigInt(256 * 1024 ** 2) },
    });
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.FAILED);
    assert.match(run.reason, /out of memory/);
    assert.match(run.reason, /256 MiB/);
  });

  it("finishes a run across an engine restart: the event stream reconnects and reports the exit it missed", async () => {
    const { runId } = await submit(stack, { agent: { commandTemplate: "sleep 4 && echo done > DONE.md", prompt: "p" } });
    await atStep(stack, runId, "agent");
    // Down for longer than the step: the container ends while no API service runs.
    await engine.restart({ downMs: 6000 });
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.COMPLETED, run.reason);
    await gone(runId);
  });

  /** The backend alone, with agents that find no control plane and give up after `giveUp`. */
  function directBackend(giveUp: string) {
    const backend = createDockerRuntime({
      address: () => engineAddress(engine.url),
      shape: {
        scope: dockerEnv().CORRAL_DOCKER_SCOPE!,
        image,
        network: "host",
        user: "10001:10001",
        defaults: { cpuMillis: 500, memoryBytes: 256 * 1024 ** 2, pids: 256, workDirBytes: 64 * 1024 ** 2 },
        tmpBytes: 64 * 1024 ** 2,
        mounts: [],
        agentEnv: { CORRAL_RECONNECT_GIVE_UP: giveUp, CORRAL_LOG_LEVEL: "info" },
      },
      controlPlaneUrl: "http://127.0.0.1:9",
      logger: createLogger({ name: "test", level: "silent" }),
    });
    const facts: { runId: string; fact: RuntimeFact; detail: string }[] = [];
    backend.onFact((runId, _attempt, fact, detail) => facts.push({ runId, fact, detail }));
    const launch = (runId: string) => backend.launch({ runId, attempt: 1, credential: "corral_att_x", controlPlaneUrl: "", limits: {}, timeouts: { runMs: 60_000, graceMs: 1000 } });
    const factOf = (runId: string) => waitFor(async () => facts.find((f) => f.runId === runId), `the fact of ${runId} through the event stream`, 30_000);
    return { backend, facts, launch, factOf };
  }

  it("delivers a fact that happened while the engine was down through the reopened event stream", async () => {
    // No control plane listens where the agent looks: it gives up after 3 s and exits 1.
    const { backend, facts, launch, factOf } = directBackend("3s");
    const runId = "0b9d6c8e-2f41-4a57-9c3d-7e1f2a4b6c8d";
    try {
      assert.equal((await backend.preflight()).ok, true);
      const handle = await launch(runId);
      assert.equal((await backend.observe(runId, 1, handle)).fact, "running");
      await engine.restart({ downMs: 6000 });
      const fact = await factOf(runId);
      assert.equal(fact.fact, "failed");
      assert.match(fact.detail, /exited with code 1/);
      // What the agent printed is the only account of why it never attached.
      assert.match((await backend.diagnostics!(runId, 1, handle)) ?? "", /127\.0\.0\.1:9/);
      // Once reported, the fact is not repeated by later events of the container, nor is its
      // removal by cleanup news.
      await backend.cleanup(runId, 1, handle);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(facts.filter((f) => f.runId === runId).length, 1);
      assert.equal((await backend.observe(runId, 1, handle)).fact, "missing");
    } finally {
      await backend.close();
    }
  });

  it("terminates: a stop with a grace reaches the agent as SIGTERM first; without one, the container is killed", async () => {
    const { backend, launch, factOf } = directBackend("10m");
    const polite = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    const forced = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a";
    try {
      const [politeHandle, forcedHandle] = await Promise.all([launch(polite), launch(forced)]);
      // Past the agent's start-up, so that it has its signal handlers.
      await waitFor(async () => (/attach|connect/i.test((await backend.diagnostics!(polite, 1, politeHandle)) ?? "") ? true : undefined), "the agent to be up");
      let started = Date.now();
      await backend.terminate(politeHandle, 5000);
      assert.ok(Date.now() - started < 5000, "the agent, which handles SIGTERM, stopped before the grace ran out");
      assert.match((await backend.diagnostics!(polite, 1, politeHandle)) ?? "", /asked to stop/);
      assert.equal((await factOf(polite)).fact, "failed");
      started = Date.now();
      await backend.terminate(forcedHandle, 0);
      assert.match((await factOf(forced)).detail, /killed by SIGKILL/);
      assert.ok(Date.now() - started < 5000);
      // A second stop of a stopped container is no error.
      await backend.terminate(forcedHandle, 0);
      await backend.terminate(politeHandle, 1000);
      await Promise.all([backend.cleanup(polite, 1, politeHandle), backend.cleanup(forced, 1, forcedHandle)]);
    } finally {
      await backend.close();
    }
  });

  it("finishes a run across a scheduler restart, and fails one whose container someone removed", async () => {
    const { runId } = await submit(stack, { agent: { commandTemplate: "sleep 3 && echo done > DONE.md", prompt: "p" } });
    await atStep(stack, runId, "agent");
    await stack.restartScheduler();
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.COMPLETED, run.reason);

    const removed = await submit(stack, { agent: { commandTemplate: "sleep 300", prompt: "p" } });
    await atStep(stack, removed.runId, "agent");
    // Killed and removed at once (podman's forced removal alone would stop it politely first).
    await docker.getContainer(containerName(removed.runId, 1)).kill({ signal: "SIGKILL" });
    await docker.getContainer(containerName(removed.runId, 1)).remove({ force: true });
    const failed = await finished(stack, removed.runId);
    assert.equal(failed.status, RunStatus.FAILED);
    assert.match(failed.reason, /killed by SIGKILL|does not exist/);
  });

  it("removes orphaned containers by label: of a finished run, of runs unknown to a scheduler that starts; not another scope's", async () => {
    const scope = scopes[0]!;
    const orphan = async (runId: string, inScope = scope) => {
      const container = await docker.createContainer({
        name: containerName(runId, 1),
        Image: image,
        Cmd: ["sleep", "300"],
        Labels: containerLabels(runId, 1, inScope),
        HostConfig: { NetworkMode: "host" },
      });
      await container.start();
    };
    // A finished run's container (as a failed cleanup would leave it).
    const { runId } = await submit(stack, { agent: { commandTemplate: "echo x > X.md", prompt: "p" } });
    const done = await finished(stack, runId);
    assert.equal(done.status, RunStatus.COMPLETED, done.reason);
    await gone(runId);
    await orphan(runId);
    await gone(runId);

    // Containers made while no scheduler of their scope ran, of runs its database does not know.
    const laterScope = `test-${randomBytes(4).toString("hex")}`;
    scopes.push(laterScope);
    const unknownRun = "7d3f2c1a-9b8e-4d6f-a5c4-3b2a1f0e9d8c";
    await orphan(unknownRun, laterScope);
    // Another installation's container on the same engine is left alone.
    const foreign = "6c2e1b0a-8a7d-4c5e-b4a3-2a1f0e9d8c7b";
    await orphan(foreign, `${laterScope}-other`);
    scopes.push(`${laterScope}-other`);
    const later = await startDockerStack({ CORRAL_DOCKER_SCOPE: laterScope });
    try {
      await gone(unknownRun);
      assert.ok(await inspect(foreign), "another scope's container was removed");
    } finally {
      await later.close();
    }
  });

  it("names the missing image and how to build it: at preflight, and when it vanishes before a launch", async () => {
    const preflight = await backendWith({ CORRAL_DOCKER_AGENT_IMAGE: "localhost/corral-no-such-image:1" }).preflight();
    assert.equal(preflight.ok, false);
    assert.match(preflight.message, /^docker: the agent image "localhost\/corral-no-such-image:1" is not on the engine at unix:\/\/.*build-agent-image\.sh/);

    const temporary = `localhost/corral-agent-vanishing:${randomBytes(3).toString("hex")}`;
    await podman(["tag", image, temporary], engine.env);
    const vanishing = await startDockerStack({ CORRAL_DOCKER_AGENT_IMAGE: temporary });
    try {
      await podman(["untag", image, temporary], engine.env);
      const { runId } = await submit(vanishing, { agent: { commandTemplate: "true", prompt: "p" } });
      const run = await finished(vanishing, runId);
      assert.equal(run.status, RunStatus.FAILED);
      assert.match(run.reason, new RegExp(`the agent image "${temporary}" is not on the engine.*build-agent-image\\.sh`));
    } finally {
      await vanishing.close();
    }
  });

  it("preflight: says what it found, and refuses an unreachable engine, a missing network, a control plane agents cannot reach", async () => {
    const good = await backendWith({}).preflight();
    assert.equal(good.ok, true, good.message);
    assert.match(good.message, /^docker: Podman Engine 4\.\d+\.\d+ \(API 1\.\d+\) at unix:\/\/.*, image ".*", network "host"$/);
    const unreachable = await backendWith({ CORRAL_DOCKER_HOST: "unix:///nonexistent/docker.sock" }).preflight();
    assert.match(unreachable.message, /^docker: the engine at unix:\/\/\/nonexistent\/docker\.sock is not reachable .*ENOENT/);
    const network = await backendWith({ CORRAL_DOCKER_NETWORK: "corral-no-such-network" }).preflight();
    assert.match(network.message, /network "corral-no-such-network" \(CORRAL_DOCKER_NETWORK\) does not exist/);
    const loopback = await backendWith({ CORRAL_DOCKER_NETWORK: "bridge" }).preflight();
    assert.match(loopback.message, /agents in network "bridge" cannot reach the control plane at http:\/\/127\.0\.0\.1:8701/);
    const reachable = await backendWith({ CORRAL_DOCKER_NETWORK: "bridge", CORRAL_DOCKER_CONTROL_PLANE_URL: "http://host.containers.internal:8701" }).preflight();
    assert.equal(reachable.ok, true, reachable.message);
  });

  /** A backend from scheduler settings, as startScheduler makes it; closed after the test. */
  function backendWith(overrides: Record<string, string>) {
    const config = loadConfig(schedulerConfig, { DATABASE_URL: "postgres://unused@127.0.0.1:9/unused", ...dockerEnv(overrides) });
    const backend = createDockerRuntime({ ...dockerSettings(config, {}), logger: createLogger({ name: "test", level: "silent" }) });
    backends.push(backend);
    return backend;
  }
  const backends: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const backend of backends.splice(0)) await backend.close();
  });

  /** The pid (on this host) of the agent in a run's container: its environment names the run. */
  async function agentPid(runId: string): Promise<number> {
    return waitFor(async () => {
      for (const entry of await readdir("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        const environ = await readFile(`/proc/${entry}/environ`, "latin1").catch(() => "");
        const cmdline = await readFile(`/proc/${entry}/cmdline`, "latin1").catch(() => "");
        if (environ.includes(`CORRAL_RUN_ID=${runId}\0`) && cmdline === "node\0agent/src/main.ts\0") return Number(entry);
      }
      return undefined;
    }, "the agent process");
  }
});
