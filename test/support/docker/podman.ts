import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startManagedProcess, type ManagedProcess } from "../kube/managed-process.ts";
import { TOOLS_CACHE } from "../tools.ts";

const run = promisify(execFile);
const READY_TIMEOUT_MS = 30_000;

/**
 * podman's storage for the tests, kept between runs in the tools cache so the agent image is
 * built once (CORRAL_PODMAN_CACHE overrides). Its run state lives in /dev/shm, a tmpfs, so
 * podman notices a reboot (its "alive" file is gone) and forgets containers that died with it;
 * the paths are fixed per storage, as podman refuses a storage opened with other ones.
 */
export const PODMAN_CACHE = process.env.CORRAL_PODMAN_CACHE || join(TOOLS_CACHE, "podman");

/** podman on PATH, or undefined. */
export function podmanBinary(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, "podman"))) return join(dir, "podman");
  }
  return undefined;
}

/** Why the docker suites cannot run here, or undefined when they can. */
export function missingPodman(): string | undefined {
  if (podmanBinary()) return undefined;
  return "podman is not installed (apt-get install podman runc uidmap slirp4netns fuse-overlayfs; .ci/run does it)";
}

/**
 * The environment every podman command of the tests runs with: a containers.conf used only by
 * the tests (runc, because crun fails on these machines' hybrid cgroups; the ulimits podman
 * needs here; events in a file, so they survive an API service restart) and its own storage.
 */
export async function podmanEnvironment(): Promise<Record<string, string>> {
  const key = createHash("sha256").update(PODMAN_CACHE).digest("hex").slice(0, 12);
  const runDir = `/dev/shm/corral-test-podman-${key}`;
  await mkdir(PODMAN_CACHE, { recursive: true });
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const containersConf = join(PODMAN_CACHE, "containers.conf");
  const storageConf = join(PODMAN_CACHE, "storage.conf");
  await writeFile(
    containersConf,
    [
      "# Written by test/support/docker/podman.ts for the tests' own podman; not used by anything else.",
      "[containers]",
      'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
      "[engine]",
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${runDir}/events.log"`,
      `tmp_dir = "${runDir}/libpod"`,
      "",
    ].join("\n"),
  );
  await writeFile(storageConf, ["[storage]", 'driver = "overlay"', `graphroot = "${join(PODMAN_CACHE, "storage")}"`, `runroot = "${runDir}/storage"`, ""].join("\n"));
  return { ...inheritedEnv(), CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf };
}

function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !name.startsWith("CONTAINERS_")) env[name] = value;
  }
  return env;
}

/** Runs podman with the tests' configuration. */
export async function podman(args: string[], env?: Record<string, string>): Promise<string> {
  const { stdout } = await run("podman", args, { env: env ?? (await podmanEnvironment()), maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

export interface PodmanService {
  /** unix:///…/podman.sock, for CORRAL_DOCKER_HOST. */
  url: string;
  socketPath: string;
  env: Record<string, string>;
  /** Stops the API service (containers keep running under conmon) and starts it again on the same socket. */
  restart(options?: { downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

/** `podman system service` on a unix socket in a temp dir, ready once /_ping answers. */
export async function startPodmanService(): Promise<PodmanService> {
  const missing = missingPodman();
  if (missing) throw new Error(missing);
  const env = await podmanEnvironment();
  const dir = await mkdtemp(join(tmpdir(), "corral-podman-"));
  const socketPath = join(dir, "podman.sock");
  const url = `unix://${socketPath}`;
  let service: ManagedProcess | undefined;
  const start = async () => {
    // In its own directory: conmon writes an "oom" marker into its working directory.
    service = await startManagedProcess("podman", ["podman", "system", "service", "--time=0", url], join(dir, "service.log"), { env, cwd: dir });
    await waitForPing(socketPath, service);
  };
  await start();
  return {
    url,
    socketPath,
    env,
    async restart(options = {}) {
      await service?.stop();
      await rm(socketPath, { force: true });
      if (options.downMs) await new Promise((resolve) => setTimeout(resolve, options.downMs));
      await start();
    },
    async stop() {
      await service?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPing(socketPath: string, service: ManagedProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exited = false;
  void service.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`podman system service exited at start:\n${await service.tail(20)}`);
    if (await ping(socketPath)) return;
    if (Date.now() > deadline) throw new Error(`podman system service did not answer /_ping within ${READY_TIMEOUT_MS / 1000} s:\n${await service.tail(20)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", timeout: 1000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    req.once("error", () => resolve(false));
    req.once("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

let shared: Promise<PodmanService> | undefined;

/** One API service for the whole test run, started on first use. */
export function sharedPodman(): Promise<PodmanService> {
  return (shared ??= startPodmanService());
}

/** Mocha root afterAll hook: stops the shared service, if one was started. */
export async function stopSharedPodman(): Promise<void> {
  const starting = shared;
  shared = undefined;
  const service = await starting?.catch(() => undefined);
  await service?.stop();
}
