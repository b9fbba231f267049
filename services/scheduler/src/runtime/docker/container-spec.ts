import type { ContainerCreateOptions } from "dockerode";
import type { LaunchRequest } from "../runtime-backend.ts";
import { containerLabels, containerName } from "./container-names.ts";

/** How agent containers look; compiled once from the scheduler's configuration. */
export interface ContainerShape {
  /** This installation's containers on a shared engine (CORRAL_DOCKER_SCOPE). */
  scope: string;
  image: string;
  /** host, bridge, none, or a user-defined network the control plane is reachable from. */
  network: string;
  /** uid:gid the agent runs as; the image's non-root user (deploy/docker/agent.Dockerfile). */
  user: string;
  /** What a run spec that sets no limit gets. */
  defaults: { cpuMillis: number; memoryBytes: number; pids: number; workDirBytes: number };
  /** Size of the tmpfs at /tmp (HOME and TMPDIR: git's and the tools' scratch space). */
  tmpBytes: number;
  /** Host directories bind-mounted into every agent container (file:// repositories, caches). */
  mounts: readonly BindMount[];
  /** Extra environment of every agent (log level). Never a secret. */
  agentEnv: Readonly<Record<string, string>>;
}

export interface BindMount {
  source: string;
  target: string;
  readOnly: boolean;
}

// Not the image's /workspace: podman gives a tmpfs mounted over an existing directory that
// directory's mode (0750) and root as owner, whatever the mount options say.
export const WORK_DIR = "/work";
// The image's agent command (deploy/docker/agent.Dockerfile's CMD), run by the wrapper below.
const AGENT_COMMAND = ["node", "agent/src/main.ts"];

/**
 * The exit status the wrapper reports when the kernel's OOM killer ended a process of the
 * container while the agent ran. Outside what the agent (0, 1, 2) and a signal (128 + n) give.
 */
export const OOM_EXIT_CODE = 250;

/**
 * The agent runs under this wrapper (POSIX sh, under the image's tini as PID 1). It compares
 * the container's OOM-kill counter (cgroup v2 memory.events, v1 memory.oom_control) before and
 * after, because engines do not all say so: podman 4 on cgroup v1 never sets OOMKilled, and
 * none of them does when the killer picks a pipeline step rather than PID 1, which is the
 * usual case (a step that allocates is the largest process). The trap keeps the shell alive
 * through the SIGTERM that tini forwards to the process group on `docker stop`
 * (TINI_KILL_PROCESS_GROUP), so it still reports how the agent, which cancels on SIGTERM, ends.
 */
export const AGENT_WRAPPER = [
  "oom_kills() {",
  "  for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do",
  '    if [ -r "$f" ]; then',
  '      while read -r key value; do if [ "$key" = oom_kill ]; then echo "$value"; fi; done < "$f"',
  "      return",
  "    fi",
  "  done",
  "}",
  "trap : TERM INT",
  "before=$(oom_kills)",
  '"$@"',
  "code=$?",
  "after=$(oom_kills)",
  'if [ -n "$after" ] && [ "$after" != "${before:-0}" ]; then',
  `  echo "corral: out of memory: the kernel's OOM killer ended a process of this container (the agent exited with code $code)" >&2`,
  `  exit ${OOM_EXIT_CODE}`,
  "fi",
  'exit "$code"',
].join("\n");

/**
 * The attempt's container. The credential is not in it: it goes to the agent's stdin once the
 * container starts (OpenStdin + StdinOnce: the engine closes stdin after that one write), since
 * an environment or a command line shows in `docker inspect` and in /proc.
 */
export function agentContainer(shape: ContainerShape, request: LaunchRequest, controlPlaneUrl: string): ContainerCreateOptions {
  const graceSeconds = Math.max(1, Math.ceil(request.timeouts.graceMs / 1000));
  const memory = request.limits.memoryBytes ?? shape.defaults.memoryBytes;
  const env: Record<string, string> = {
    ...shape.agentEnv,
    CORRAL_CONTROL_PLANE_URL: controlPlaneUrl,
    CORRAL_RUN_ID: request.runId,
    CORRAL_ATTEMPT: String(request.attempt),
    CORRAL_WORK_DIR: WORK_DIR,
    // The root filesystem is read-only; git and the agent's tools need a writable home.
    HOME: "/tmp",
    TMPDIR: "/tmp",
    // tini forwards SIGTERM to the whole process group: the wrapper and the agent.
    TINI_KILL_PROCESS_GROUP: "1",
    // The launch's trace context, so the agent's first Attach call joins the run's trace.
    ...(request.traceContext ? { TRACEPARENT: request.traceContext.traceparent, TRACESTATE: request.traceContext.tracestate } : {}),
  };
  return {
    name: containerName(request.runId, request.attempt),
    Image: shape.image,
    Cmd: ["/bin/sh", "-c", AGENT_WRAPPER, "corral-agent", ...AGENT_COMMAND],
    Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
    Labels: containerLabels(request.runId, request.attempt, shape.scope),
    User: shape.user,
    AttachStdin: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false,
    // `docker stop` by hand gives the agent the run's grace too.
    StopTimeout: graceSeconds,
    HostConfig: {
      NetworkMode: shape.network,
      ReadonlyRootfs: true,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      Memory: memory,
      // No swap beyond the limit: an agent over its memory is killed, not slowed to a crawl.
      MemorySwap: memory,
      NanoCpus: (request.limits.cpuMillis ?? shape.defaults.cpuMillis) * 1_000_000,
      PidsLimit: request.limits.pids ?? shape.defaults.pids,
      // tmpfs pages count against the memory limit: a work dir that fills up uses the memory.
      // World-writable and sticky, as the agent's uid may differ from the image's (podman 4
      // refuses uid= for tmpfs); nothing else runs in the container.
      Tmpfs: {
        [WORK_DIR]: `rw,nosuid,nodev,size=${request.limits.diskBytes ?? shape.defaults.workDirBytes},mode=1777`,
        "/tmp": `rw,nosuid,nodev,size=${shape.tmpBytes},mode=1777`,
      },
      Binds: shape.mounts.map((m) => `${m.source}:${m.target}:${m.readOnly ? "ro" : "rw"}`),
      // A failed attempt is reported, not restarted behind Corral's back: RetryRun makes a new attempt.
      RestartPolicy: { Name: "no" },
    },
  };
}
