import { constants } from "node:os";
import type { ContainerInspectInfo } from "dockerode";
import type { Observation } from "../runtime-backend.ts";
import { OOM_EXIT_CODE } from "./container-spec.ts";

/** What the engine says of a container, as far as facts need it (a subset of its inspection). */
export type ContainerState = Pick<ContainerInspectInfo, "State"> & { HostConfig?: { Memory?: number } };

/**
 * What the runtime knows of an attempt from its container's inspection; undefined when the
 * engine has no such container. Level-based: the same state always gives the same fact.
 * `oomEvent`: the engine sent an "oom" event for the container.
 */
export function containerFact(container: ContainerState | undefined, oomEvent = false): Observation {
  if (!container) return { fact: "missing", detail: "the attempt's container does not exist (removed, or never created)" };
  const state = container.State;
  switch (state.Status) {
    case "created":
    case "running":
    case "paused":
    case "restarting":
      return { fact: "running", detail: "" };
    case "removing":
      return { fact: "missing", detail: "the attempt's container is being removed" };
  }
  // exited, dead, or what an engine calls them (podman: stopped).
  const neverStarted = !state.StartedAt || state.StartedAt.startsWith("0001-01-01");
  if (state.OOMKilled || oomEvent || state.ExitCode === OOM_EXIT_CODE) {
    const limit = container.HostConfig?.Memory ? ` of ${formatBytes(container.HostConfig.Memory)}` : "";
    return { fact: "failed", detail: `out of memory: the agent's container reached its memory limit${limit} and the kernel killed a process in it` };
  }
  if (state.ExitCode === 0 && !neverStarted) return { fact: "succeeded", detail: "" };
  const error = state.Error ? ` (${state.Error})` : "";
  if (neverStarted) return { fact: "failed", detail: `the agent's container could not start${error}`, neverStarted: true };
  return { fact: "failed", detail: `${exitDetail(state.ExitCode)}${error}` };
}

function exitDetail(code: number): string {
  const bySignal = code > 128 ? Object.entries(constants.signals).find(([, n]) => n === code - 128)?.[0] : undefined;
  return bySignal ? `the agent's container was killed by ${bySignal} (exit code ${code})` : `the agent's container exited with code ${code}`;
}

function formatBytes(bytes: number): string {
  return bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3} GiB` : bytes % 1024 ** 2 === 0 ? `${bytes / 1024 ** 2} MiB` : `${bytes} bytes`;
}
