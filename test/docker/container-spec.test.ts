import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fc from "fast-check";
import { attemptOf, containerLabels, containerName, managedFilter } from "@corral/scheduler/runtime/docker/container-names.ts";
import { containerFact, type ContainerState } from "@corral/scheduler/runtime/docker/container-facts.ts";
import { AGENT_WRAPPER, agentContainer, OOM_EXIT_CODE, WORK_DIR, type ContainerShape } from "@corral/scheduler/runtime/docker/container-spec.ts";
import { demultiplex } from "@corral/scheduler/runtime/docker/docker-runtime.ts";
import type { LaunchRequest } from "@corral/scheduler/runtime/runtime-backend.ts";

const RUN_ID = "3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9";
const SHAPE: ContainerShape = {
  scope: "default",
  image: "corral-agent:1",
  network: "corral-net",
  user: "10001:10001",
  defaults: { cpuMillis: 1000, memoryBytes: 2 * 1024 ** 3, pids: 1024, workDirBytes: 1024 ** 3 },
  tmpBytes: 256 * 1024 ** 2,
  mounts: [{ source: "/srv/git", target: "/srv/git", readOnly: true }],
  agentEnv: { CORRAL_LOG_LEVEL: "debug", CORRAL_RUN_ID: "not-this-one" },
};
const REQUEST: LaunchRequest = {
  runId: RUN_ID,
  attempt: 2,
  credential: "corral_att_secret-token",
  controlPlaneUrl: "http://127.0.0.1:8701",
  limits: {},
  timeouts: { runMs: 3_600_000, graceMs: 2500 },
};

describe("docker runtime: the agent's container", () => {
  it("hands the launch's trace context to the agent, when there is one", () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const traced = agentContainer(SHAPE, { ...REQUEST, traceContext: { traceparent, tracestate: "" } }, "http://10.0.0.1:8701").Env!;
    assert.ok(traced.includes(`TRACEPARENT=${traceparent}`));
    assert.ok(!agentContainer(SHAPE, REQUEST, "http://10.0.0.1:8701").Env!.some((e) => e.startsWith("TRACEPARENT=")));
  });

  it("carries the attempt in its name and labels, and no credential anywhere", () => {
    const spec = agentContainer(SHAPE, REQUEST, "http://10.0.0.1:8701");
    assert.equal(spec.name, `corral-${RUN_ID}-2`);
    assert.deepEqual(spec.Labels, {
      "corral.dev/managed-by": "corral-scheduler",
      "corral.dev/component": "agent",
      "corral.dev/scope": "default",
      "corral.dev/run-id": RUN_ID,
      "corral.dev/attempt": "2",
    });
    assert.doesNotMatch(JSON.stringify(spec), /corral_att_|secret-token/);
    const env = Object.fromEntries(spec.Env!.map((e) => e.split(/=(.*)/s).slice(0, 2)));
    assert.equal(env.CORRAL_CONTROL_PLANE_URL, "http://10.0.0.1:8701");
    assert.equal(env.CORRAL_RUN_ID, RUN_ID, "the agent environment cannot override the attempt's identity");
    assert.equal(env.CORRAL_ATTEMPT, "2");
    assert.equal(env.CORRAL_WORK_DIR, WORK_DIR);
    assert.equal(env.CORRAL_LOG_LEVEL, "debug");
    assert.equal(env.CORRAL_CREDENTIAL_FILE, undefined, "the credential comes on stdin");
    // stdin open for exactly one write, which the engine closes after it.
    assert.deepEqual([spec.AttachStdin, spec.OpenStdin, spec.StdinOnce, spec.Tty], [true, true, true, false]);
  });

  it("is confined: non-root, read-only root, no capabilities, no privilege gain, tmpfs work dir and /tmp, no restarts", () => {
    const spec = agentContainer(SHAPE, REQUEST, "http://10.0.0.1:8701");
    const host = spec.HostConfig!;
    assert.equal(spec.User, "10001:10001");
    assert.equal(host.ReadonlyRootfs, true);
    assert.deepEqual(host.CapDrop, ["ALL"]);
    assert.deepEqual(host.SecurityOpt, ["no-new-privileges"]);
    assert.equal(host.NetworkMode, "corral-net");
    assert.deepEqual(host.RestartPolicy, { Name: "no" });
    assert.deepEqual(host.Tmpfs, { [WORK_DIR]: `rw,nosuid,nodev,size=${1024 ** 3},mode=1777`, "/tmp": `rw,nosuid,nodev,size=${256 * 1024 ** 2},mode=1777` });
    assert.deepEqual(host.Binds, ["/srv/git:/srv/git:ro"]);
    assert.equal(spec.StopTimeout, 3, "docker stop by hand gives the run's grace, rounded up");
  });

  it("takes CPU, memory, pids and work-dir size from the run spec, else the defaults; no swap", () => {
    const defaults = agentContainer(SHAPE, REQUEST, "").HostConfig!;
    assert.deepEqual([defaults.NanoCpus, defaults.Memory, defaults.MemorySwap, defaults.PidsLimit], [1_000_000_000, 2 * 1024 ** 3, 2 * 1024 ** 3, 1024]);
    const limited = agentContainer(SHAPE, { ...REQUEST, limits: { cpuMillis: 250, memoryBytes: 512 * 1024 ** 2, pids: 64, diskBytes: 128 * 1024 ** 2 } }, "").HostConfig!;
    assert.deepEqual([limited.NanoCpus, limited.Memory, limited.MemorySwap, limited.PidsLimit], [250_000_000, 512 * 1024 ** 2, 512 * 1024 ** 2, 64]);
    assert.match(limited.Tmpfs![WORK_DIR]!, new RegExp(`size=${128 * 1024 ** 2},`));
  });

  it("names only uuids and attempts in range, and reads back only its own scope's labels", () => {
    assert.throws(() => containerName("not-a-uuid", 1), /is not a lowercase uuid/);
    assert.throws(() => containerName(RUN_ID.toUpperCase(), 1), /is not a lowercase uuid/);
    assert.throws(() => containerName(RUN_ID, 0), /attempt 0 is out of range/);
    assert.deepEqual(managedFilter("a"), ["corral.dev/managed-by=corral-scheduler", "corral.dev/component=agent", "corral.dev/scope=a"]);
    fc.assert(
      fc.property(fc.uuid({ version: 4 }), fc.integer({ min: 1, max: 2 ** 32 - 1 }), (runId, attempt) => {
        const labels = containerLabels(runId, attempt, "a");
        assert.deepEqual(attemptOf(labels, "a"), { runId, attempt });
        assert.equal(attemptOf(labels, "b"), undefined);
        assert.ok(containerName(runId, attempt).length <= 7 + 36 + 1 + 10);
      }),
    );
    assert.equal(attemptOf({ ...containerLabels(RUN_ID, 1, "a"), "corral.dev/attempt": "1.5" }, "a"), undefined);
    assert.equal(attemptOf({ ...containerLabels(RUN_ID, 1, "a"), "corral.dev/managed-by": "someone" }, "a"), undefined);
    assert.equal(attemptOf(null, "a"), undefined);
  });
});

describe("docker runtime: facts from a container's state", () => {
  const state = (s: Partial<ContainerState["State"]>, memory?: number): ContainerState => ({
    State: { Status: "exited", Running: false, Paused: false, Restarting: false, OOMKilled: false, Dead: false, Pid: 0, ExitCode: 0, Error: "", StartedAt: "2026-01-01T00:00:00Z", FinishedAt: "2026-01-01T00:01:00Z", ...s },
    HostConfig: { Memory: memory },
  });

  it("reads running, succeeded, failed and missing", () => {
    for (const status of ["created", "running", "paused", "restarting"]) assert.deepEqual(containerFact(state({ Status: status })), { fact: "running", detail: "" });
    assert.deepEqual(containerFact(state({ ExitCode: 0 })), { fact: "succeeded", detail: "" });
    assert.deepEqual(containerFact(state({ ExitCode: 1 })), { fact: "failed", detail: "the agent's container exited with code 1" });
    assert.deepEqual(containerFact(state({ ExitCode: 137 })), { fact: "failed", detail: "the agent's container was killed by SIGKILL (exit code 137)" });
    assert.equal(containerFact(undefined).fact, "missing");
    assert.equal(containerFact(state({ Status: "removing" })).fact, "missing");
  });

  it("reads out of memory from the engine's flag, its oom event, or the wrapper's exit status", () => {
    for (const container of [state({ OOMKilled: true, ExitCode: 137 }, 256 * 1024 ** 2), state({ ExitCode: OOM_EXIT_CODE }, 256 * 1024 ** 2)]) {
      assert.deepEqual(containerFact(container), {
        fact: "failed",
        detail: "out of memory: the agent's container reached its memory limit of 256 MiB and the kernel killed a process in it",
      });
    }
    // An agent that completed after its step was killed still failed: the run ran out of memory.
    assert.match(containerFact(state({ ExitCode: 0 }), true).detail, /^out of memory/);
  });

  it("marks a container that never started, so finalization does not wait for a completion", () => {
    const fact = containerFact(state({ ExitCode: 127, StartedAt: "0001-01-01T00:00:00Z", Error: 'exec: "node": executable file not found in $PATH' }));
    assert.deepEqual(fact, { fact: "failed", detail: `the agent's container could not start (exec: "node": executable file not found in $PATH)`, neverStarted: true });
  });
});

describe("docker runtime: the agent wrapper", () => {
  async function wrapped(command: string, signal?: NodeJS.Signals): Promise<{ code: number | null; stderr: string }> {
    const child = spawn("/bin/sh", ["-c", AGENT_WRAPPER, "corral-agent", "/bin/sh", "-c", command], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stderr = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    if (signal) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      // As tini does with TINI_KILL_PROCESS_GROUP: the whole group, wrapper and agent.
      process.kill(-child.pid!, signal);
    }
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    return { code, stderr };
  }

  it("passes the agent's exit status through when no process was OOM-killed", async () => {
    assert.deepEqual(await wrapped("exit 0"), { code: 0, stderr: "" });
    assert.deepEqual(await wrapped("exit 3"), { code: 3, stderr: "" });
  });

  it("survives the SIGTERM of a stop and reports how the agent, which handles it, ended", async () => {
    assert.deepEqual(await wrapped("trap 'exit 0' TERM; sleep 5 & wait", "SIGTERM"), { code: 0, stderr: "" });
    assert.equal((await wrapped("sleep 5", "SIGTERM")).code, 128 + 15);
  });
});

describe("docker runtime: container logs", () => {
  it("demultiplexes the engine's stdout and stderr frames, and leaves unframed text alone", () => {
    const frame = (stream: number, text: string) => {
      const payload = Buffer.from(text);
      const header = Buffer.alloc(8);
      header[0] = stream;
      header.writeUInt32BE(payload.length, 4);
      return Buffer.concat([header, payload]);
    };
    assert.equal(demultiplex(Buffer.concat([frame(1, "out\n"), frame(2, "err\n"), frame(1, "")])).toString(), "out\nerr\n");
    assert.equal(demultiplex(Buffer.from("plain text from a tty\n")).toString(), "plain text from a tty\n");
    assert.equal(demultiplex(Buffer.alloc(0)).toString(), "");
  });
});
