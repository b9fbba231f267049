import { isAbsolute } from "node:path";
import { ConfigError } from "@corral/plumbing/config.ts";
import type { SchedulerConfig } from "../../config.ts";
import type { BindMount } from "./container-spec.ts";
import type { DockerRuntimeOptions } from "./docker-runtime.ts";
import { engineAddress } from "./engine-connection.ts";

/** The docker runtime's options, compiled once from the scheduler's configuration. */
export function dockerSettings(config: SchedulerConfig, agentEnv: Record<string, string>, env: NodeJS.ProcessEnv = process.env): Omit<DockerRuntimeOptions, "logger"> {
  const host = config.CORRAL_DOCKER_HOST ?? env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  return {
    address: () => engineAddress(host, config.CORRAL_DOCKER_CERT_PATH ?? env.DOCKER_CERT_PATH),
    controlPlaneUrl: config.CORRAL_DOCKER_CONTROL_PLANE_URL ?? config.CORRAL_CONTROL_PLANE_URL,
    shape: {
      scope: config.CORRAL_DOCKER_SCOPE,
      image: config.CORRAL_DOCKER_AGENT_IMAGE,
      network: config.CORRAL_DOCKER_NETWORK,
      user: config.CORRAL_DOCKER_USER,
      defaults: {
        cpuMillis: config.CORRAL_DOCKER_DEFAULT_CPU_MILLIS,
        memoryBytes: config.CORRAL_DOCKER_DEFAULT_MEMORY,
        pids: config.CORRAL_DOCKER_DEFAULT_PIDS,
        workDirBytes: config.CORRAL_DOCKER_WORK_DIR_SIZE,
      },
      tmpBytes: config.CORRAL_DOCKER_TMP_SIZE,
      mounts: parseMounts(config.CORRAL_DOCKER_MOUNTS),
      agentEnv,
    },
  };
}

/** `SOURCE:TARGET[:ro|rw]`, comma-separated; absolute paths on both sides. */
export function parseMounts(value: string): BindMount[] {
  const fail = (message: string): never => {
    throw new ConfigError([{ variable: "CORRAL_DOCKER_MOUNTS", message }]);
  };
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [source, target, mode = "rw", ...rest] = entry.split(":");
      if (!source || !target || rest.length > 0 || (mode !== "ro" && mode !== "rw")) fail(`"${entry}" is not SOURCE:TARGET[:ro|rw]`);
      if (!isAbsolute(source!) || !isAbsolute(target!)) fail(`"${entry}": both paths must be absolute`);
      return { source: source!, target: target!, readOnly: mode === "ro" };
    });
}
