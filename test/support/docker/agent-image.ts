import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { PODMAN_CACHE, podman, podmanEnvironment } from "./podman.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const REPOSITORY = "localhost/corral-agent";
const INPUTS_LABEL = "corral-test.image-inputs";
// Everything the image is made from: the script, the Dockerfile and its context.
const INPUT_FILES = ["test/support/docker/agent-image.ts", "deploy/docker/build-agent-image.sh", "deploy/docker/agent.Dockerfile", "deploy/docker/agent.Dockerfile.dockerignore", "package.json", "package-lock.json", ".npmrc"];
const INPUT_DIRS = ["agent", "plumbing/src", "proto/gen"];

/** A hash of the agent image's inputs: the image is rebuilt only when one changes. */
export function agentImageInputsHash(): string {
  const hash = createHash("sha256");
  const files = [...INPUT_FILES, ...INPUT_DIRS.flatMap(listFiles)];
  for (const dir of ["proto", "plumbing", "agent", "cli", "deploy"]) files.push(`${dir}/package.json`);
  for (const entry of readdirSync(join(ROOT, "services"))) files.push(`services/${entry}/package.json`);
  for (const file of [...new Set(files)].sort()) {
    let content: Buffer;
    try {
      content = readFileSync(join(ROOT, file));
    } catch {
      continue;
    }
    hash.update(`${file}\0${content.length}\0`).update(content);
  }
  return hash.digest("hex").slice(0, 16);
}

function listFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && !entry.parentPath.includes("node_modules"))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)));
}

let building: Promise<string> | undefined;

/**
 * The agent image in the tests' podman storage, built by deploy/docker/build-agent-image.sh
 * when its inputs changed (about a minute: debootstrap, Node, npm ci), else reused at once.
 * Built under a lock, as two test processes may share the storage.
 */
export function testAgentImage(progress: (line: string) => void = (line) => console.log(`      ${line}`)): Promise<string> {
  return (building ??= build(progress));
}

async function build(progress: (line: string) => void): Promise<string> {
  const env = await podmanEnvironment();
  const inputs = agentImageInputsHash();
  const tag = `${REPOSITORY}:test-${inputs}`;
  if (await exists(tag, env)) return tag;
  progress(`building the agent image ${tag} with deploy/docker/build-agent-image.sh (about a minute; cached in ${PODMAN_CACHE})…`);
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    let output = "";
    const child = spawn("flock", [join(PODMAN_CACHE, "build.lock"), "bash", "deploy/docker/build-agent-image.sh", "-t", tag, "--label", `${INPUTS_LABEL}=${inputs}`], {
      cwd: ROOT,
      env: { ...env, CONTAINER_ENGINE: "podman" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      for (const line of chunk.toString().split("\n")) if (line.startsWith("build-agent-image:")) progress(line);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`build-agent-image.sh exited with ${code}:\n${output.slice(-4000)}`))));
  });
  progress(`agent image built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  await removeStale(tag, env);
  return tag;
}

async function exists(tag: string, env: Record<string, string>): Promise<boolean> {
  return podman(["image", "exists", tag], env).then(
    () => true,
    () => false,
  );
}

/** Earlier test images (other inputs) and the dangling layers of builds, so the cache does not grow without bound. */
async function removeStale(current: string, env: Record<string, string>): Promise<void> {
  const listed = await podman(["images", "--filter", `label=${INPUTS_LABEL}`, "--format", "{{.Repository}}:{{.Tag}}"], env);
  const stale = listed.split("\n").filter((name) => name && name !== current && name !== "<none>:<none>");
  if (stale.length > 0) await podman(["rmi", "--force", ...stale], env).catch(() => undefined);
  await podman(["image", "prune", "--force"], env).catch(() => undefined);
}

