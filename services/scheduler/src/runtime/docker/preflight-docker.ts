import type Docker from "dockerode";
import type { ContainerShape } from "./container-spec.ts";
import { engineErrorMessage, isNotFound } from "./engine-errors.ts";

/** Docker 19.03: every field the backend sets (NanoCpus, PidsLimit, Tmpfs, StopTimeout) and label-filtered events. */
export const MIN_API_VERSION = "1.40";
// Networks every engine has under these names (podman's compat API maps bridge to its default).
const BUILT_IN_NETWORKS = new Set(["host", "bridge", "none", "default"]);

/**
 * Whether runs can be launched here, and what to fix if not: the engine answers, its API is
 * recent enough, the agent image is there (no registry is assumed: the image is built on the
 * engine's host), the network exists, and agents in that network can reach the control plane.
 */
export async function preflightDocker(options: {
  docker: Docker;
  engineUrl: string;
  shape: ContainerShape;
  controlPlaneUrl: string;
  /** How to build the agent image, for the message when it is missing. */
  imageHint: string;
}): Promise<{ ok: boolean; message: string }> {
  const { docker, engineUrl, shape } = options;
  let version: { Version?: string; ApiVersion?: string; Components?: { Name?: string }[] };
  try {
    await docker.ping();
    version = await docker.version();
  } catch (error) {
    return { ok: false, message: `docker: the engine at ${engineUrl} is not reachable (CORRAL_DOCKER_HOST, else DOCKER_HOST): ${engineErrorMessage(error)}` };
  }
  const apiVersion = version.ApiVersion ?? "0";
  if (compareVersions(apiVersion, MIN_API_VERSION) < 0) {
    return { ok: false, message: `docker: the engine at ${engineUrl} speaks API ${apiVersion}; at least ${MIN_API_VERSION} (Docker 19.03) is needed` };
  }
  try {
    await docker.getImage(shape.image).inspect();
  } catch (error) {
    if (isNotFound(error)) return { ok: false, message: `docker: the agent image "${shape.image}" is not on the engine at ${engineUrl}; ${options.imageHint}` };
    return { ok: false, message: `docker: cannot inspect the agent image "${shape.image}": ${engineErrorMessage(error)}` };
  }
  if (!BUILT_IN_NETWORKS.has(shape.network) && !shape.network.startsWith("container:")) {
    try {
      await docker.getNetwork(shape.network).inspect();
    } catch (error) {
      if (isNotFound(error)) return { ok: false, message: `docker: network "${shape.network}" (CORRAL_DOCKER_NETWORK) does not exist on the engine at ${engineUrl}` };
      return { ok: false, message: `docker: cannot inspect network "${shape.network}": ${engineErrorMessage(error)}` };
    }
  }
  const controlPlane = parseUrl(options.controlPlaneUrl);
  if (!controlPlane) return { ok: false, message: `docker: no usable control-plane URL for agent containers (CORRAL_DOCKER_CONTROL_PLANE_URL): "${options.controlPlaneUrl}"` };
  if (isLoopback(controlPlane.hostname) && shape.network !== "host") {
    return {
      ok: false,
      message:
        `docker: agents in network "${shape.network}" cannot reach the control plane at ${options.controlPlaneUrl} (loopback is the container's own); ` +
        `set CORRAL_DOCKER_CONTROL_PLANE_URL to an address containers reach (such as http://host.docker.internal:8701, with the control plane listening there) or CORRAL_DOCKER_NETWORK=host`,
    };
  }
  const engine = version.Components?.[0]?.Name ?? "Docker Engine";
  return { ok: true, message: `docker: ${engine} ${version.Version ?? "?"} (API ${apiVersion}) at ${engineUrl}, image "${shape.image}", network "${shape.network}"` };
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

function parseUrl(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname.startsWith("127.") || hostname === "[::1]";
}
