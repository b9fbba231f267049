import type Docker from "dockerode";
import type { ContainerInspectInfo } from "dockerode";
import type { Logger } from "@corral/plumbing/logger.ts";
import type { FactListener, LaunchRequest, Observation, RuntimeBackend, RuntimeHandle } from "../runtime-backend.ts";
import { attemptOf, containerName, managedFilter } from "./container-names.ts";
import { agentContainer, type ContainerShape } from "./container-spec.ts";
import { containerFact } from "./container-facts.ts";
import { attachStdin, connectEngine, type EngineAddress } from "./engine-connection.ts";
import { engineErrorMessage, isConflict, isNotFound, isNotModified, isNotRunning } from "./engine-errors.ts";
import { watchEngineEvents, type EngineEvents } from "./engine-events.ts";
import { preflightDocker } from "./preflight-docker.ts";

export interface DockerRuntimeOptions {
  /** Resolved on first use only, so a scheduler without this runtime never reads certificates. */
  address: () => EngineAddress;
  shape: ContainerShape;
  /** The control-plane URL agent containers reach; empty: the launch request's. */
  controlPlaneUrl: string;
  logger: Logger;
  /** Longest diagnostics kept from a container whose agent never attached. */
  diagnosticsBytes?: number;
}

/** How to get the agent image onto an engine, for preflight and launch failures. */
export const IMAGE_HINT =
  "build it on the engine's host with deploy/docker/build-agent-image.sh (no registry needed), or `docker build -f deploy/docker/agent.Dockerfile -t IMAGE .`, and set CORRAL_DOCKER_AGENT_IMAGE";

// An engine that accepts the connection but never upgrades it must not hold a launch forever.
const ATTACH_TIMEOUT_MS = 30_000;
// Events after which an attempt's fact may have changed.
const FACT_EVENTS = new Set(["start", "die", "oom", "destroy", "remove", "kill", "stop"]);

/**
 * Runs each attempt's agent in a container through the Docker Engine API (Docker or podman's
 * compatible service). The credential reaches the agent on stdin, never in the container's
 * configuration. Facts come from the engine's event stream (start, die, oom, destroy), with
 * one inspection per event for the exit status; the reconciler's level-based passes inspect
 * too. Containers carry their run id and attempt as labels, so a restarted scheduler finds its
 * containers, and those of finished or unknown runs are removed as orphans.
 */
export function createDockerRuntime(options: DockerRuntimeOptions): RuntimeBackend {
  const { shape, logger } = options;
  const listeners: FactListener[] = [];
  // The last fact reported per attempt, so that repeated events give one edge per change.
  const reported = new Map<string, string>();
  // Containers the engine sent an "oom" event for.
  const oomEvents = new Set<string>();
  // Attempts whose container cleanup removed: their removal event is no news.
  const removedByUs = new Set<string>();
  let engine: { address: EngineAddress; docker: Docker; events: EngineEvents } | undefined;
  // After close, nothing may open a new event stream (a late report would keep the process alive).
  let closed = false;
  const key = (runId: string, attempt: number) => `${runId}/${attempt}`;

  function connect(): NonNullable<typeof engine> {
    if (engine) return engine;
    if (closed) throw new Error("the docker runtime is closed");
    const address = options.address();
    const docker = connectEngine(address);
    const events = watchEngineEvents({
      docker,
      labels: managedFilter(shape.scope),
      logger,
      onEvent(event) {
        const owner = attemptOf(event.attributes, shape.scope);
        if (!owner || !FACT_EVENTS.has(event.action)) return;
        if (event.action === "oom") oomEvents.add(event.id);
        if ((event.action === "destroy" || event.action === "remove") && removedByUs.delete(key(owner.runId, owner.attempt))) return;
        void report(owner.runId, owner.attempt).catch((error: unknown) => logger.warn({ err: error }, "could not report a container's fact"));
      },
      // After a reconnect, events missed in between may be gone: look at every container again.
      onConnect: () => void resync().catch((error: unknown) => logger.warn({ err: error }, "could not look at the containers again")),
    });
    engine = { address, docker, events };
    return engine;
  }

  async function inspect(docker: Docker, ref: string): Promise<ContainerInspectInfo | undefined> {
    try {
      return await docker.getContainer(ref).inspect();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async function observeNow(runId: string, attempt: number, handle: RuntimeHandle | null): Promise<Observation> {
    const { docker, address } = connect();
    try {
      const info = await inspect(docker, handle?.containerId ?? containerName(runId, attempt));
      return containerFact(info, info ? oomEvents.has(info.Id) : false);
    } catch (error) {
      // Containers outlive an engine restart (podman's conmon, dockerd's live restore): no fact yet.
      return { fact: "running", detail: `the engine at ${address.url} did not answer (${engineErrorMessage(error)}); no fact` };
    }
  }

  async function report(runId: string, attempt: number): Promise<void> {
    if (closed) return;
    const { fact, detail } = await observeNow(runId, attempt, null);
    if (closed) return;
    const k = key(runId, attempt);
    if (fact === "running" || reported.get(k) === fact) return;
    // A removed container gives no further facts: forget the attempt.
    if (fact === "missing") reported.delete(k);
    else reported.set(k, fact);
    for (const listener of listeners) listener(runId, attempt, fact, detail);
  }

  async function resync(): Promise<void> {
    if (closed) return;
    for (const sandbox of await listManaged()) await report(sandbox.runId, sandbox.attempt);
  }

  async function listManaged(): Promise<{ runId: string; attempt: number; handle: RuntimeHandle }[]> {
    if (closed) return [];
    const { docker } = connect();
    try {
      const containers = await docker.listContainers({ all: true, filters: { label: managedFilter(shape.scope) } });
      return containers.flatMap((c) => {
        const owner = attemptOf(c.Labels, shape.scope);
        return owner ? [{ ...owner, handle: { containerId: c.Id } }] : [];
      });
    } catch (error) {
      logger.warn({ error: engineErrorMessage(error) }, "cannot list the agent containers");
      return [];
    }
  }

  async function remove(docker: Docker, ref: string): Promise<boolean> {
    try {
      await docker.getContainer(ref).remove({ force: true, v: true });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      // 409: a removal already in progress (a second cleanup), which will finish it.
      if (isConflict(error)) return false;
      throw new Error(`removing container ${ref}: ${engineErrorMessage(error)}`, { cause: error });
    }
  }

  async function create(docker: Docker, request: LaunchRequest): Promise<{ id: string; fresh: boolean }> {
    const spec = agentContainer(shape, request, options.controlPlaneUrl || request.controlPlaneUrl);
    try {
      return { id: (await docker.createContainer(spec)).id, fresh: true };
    } catch (error) {
      if (isNotFound(error)) {
        throw new Error(`the agent image "${shape.image}" is not on the engine at ${connect().address.url}: ${engineErrorMessage(error)}; ${IMAGE_HINT}`, { cause: error });
      }
      if (!isConflict(error)) throw new Error(`creating container ${spec.name}: ${engineErrorMessage(error)}`, { cause: error });
    }
    // A launch retried after a crash: the container of the same name is this attempt's.
    const existing = await inspect(docker, spec.name!);
    if (existing && existing.State.Status !== "created") return { id: existing.Id, fresh: false };
    // Never started, so nobody has its stdin: start over.
    await remove(docker, spec.name!);
    return { id: (await docker.createContainer(spec)).id, fresh: true };
  }

  return {
    name: "docker",

    async preflight() {
      try {
        const { docker, address } = connect();
        return await preflightDocker({ docker, engineUrl: address.url, shape, controlPlaneUrl: options.controlPlaneUrl, imageHint: IMAGE_HINT });
      } catch (error) {
        return { ok: false, message: `docker: ${(error as Error).message}` };
      }
    },

    async launch(request) {
      const { docker, address } = connect();
      const { id, fresh } = await create(docker, request);
      if (!fresh) return { containerId: id };
      try {
        // Attached before the start, so the agent's first read finds the line.
        const stdin = await attachStdin(address, id, AbortSignal.timeout(ATTACH_TIMEOUT_MS));
        await docker.getContainer(id).start();
        await stdin.write(`${request.credential}\n`);
      } catch (error) {
        await remove(docker, id).catch(() => undefined);
        throw new Error(`starting container ${containerName(request.runId, request.attempt)}: ${engineErrorMessage(error)}`, { cause: error });
      }
      logger.info({ runId: request.runId, attempt: request.attempt, containerId: id, image: shape.image }, "agent container started");
      return { containerId: id };
    },

    observe: observeNow,

    async terminate(handle, graceMs) {
      const ref = handle.containerId;
      if (!ref) return;
      const { docker } = connect();
      const container = docker.getContainer(ref);
      try {
        // stop: SIGTERM (tini passes it to the agent), then SIGKILL from the engine after t seconds.
        if (graceMs > 0) await container.stop({ t: Math.ceil(graceMs / 1000) });
        else await container.kill({ signal: "SIGKILL" });
      } catch (error) {
        // Already stopped (304), gone (404), or not running (409; podman: 500): nothing left to stop.
        if (isNotModified(error) || isNotFound(error) || isNotRunning(error)) return;
        throw new Error(`stopping container ${ref}: ${engineErrorMessage(error)}`, { cause: error });
      }
    },

    async cleanup(runId, attempt, handle) {
      const { docker } = connect();
      const ref = handle?.containerId ?? containerName(runId, attempt);
      // Marked before the call: the event may come down the stream before the call's answer.
      removedByUs.add(key(runId, attempt));
      let removed = false;
      try {
        removed = await remove(docker, ref);
      } finally {
        if (!removed) removedByUs.delete(key(runId, attempt));
      }
      // By name too: a handle from before a relaunch may name another container of the attempt.
      if (handle?.containerId) await remove(docker, containerName(runId, attempt));
      reported.delete(key(runId, attempt));
      if (handle?.containerId) oomEvents.delete(handle.containerId);
    },

    async diagnostics(runId, attempt, handle) {
      const { docker } = connect();
      try {
        const raw = (await docker.getContainer(handle?.containerId ?? containerName(runId, attempt)).logs({ stdout: true, stderr: true, tail: 200 })) as Buffer;
        const text = demultiplex(raw);
        const limit = options.diagnosticsBytes ?? 16 * 1024;
        return text.length > limit ? text.subarray(text.length - limit).toString("utf8").trim() || undefined : text.toString("utf8").trim() || undefined;
      } catch (error) {
        logger.warn({ runId, attempt, error: engineErrorMessage(error) }, "could not read the container's log for diagnostics");
        return undefined;
      }
    },

    listSandboxes: () => listManaged(),

    onFact(listener) {
      listeners.push(listener);
    },

    async close() {
      closed = true;
      engine?.events.stop();
      engine = undefined;
    },
  };
}

/**
 * A non-TTY container's log as the engine sends it: frames of an 8-byte header (stream, 3
 * zero bytes, big-endian length) and a payload. Text without that framing is returned as is.
 */
export function demultiplex(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const stream = raw[offset]!;
    if (stream > 2 || raw[offset + 1] !== 0 || raw[offset + 2] !== 0 || raw[offset + 3] !== 0) return raw;
    const length = raw.readUInt32BE(offset + 4);
    parts.push(raw.subarray(offset + 8, Math.min(raw.length, offset + 8 + length)));
    offset += 8 + length;
  }
  return offset === raw.length || parts.length > 0 ? Buffer.concat(parts) : raw;
}

