import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createSeededRemote, remoteBranch } from "../agent/support/git-fixtures.ts";
import { corralUpEnv, runCorral, startCorralUp } from "../support/corral-up.ts";
import { testAgentImage } from "../support/docker/agent-image.ts";
import { missingPodman, podman, sharedPodman, type PodmanService } from "../support/docker/podman.ts";

const run = promisify(execFile);

describe("corral up --runtime docker", function () {
  // A whole stack and a run: slow on a machine that is busy with other suites.
  this.timeout(300_000);
  let engine: PodmanService;
  let image: string;
  let repos: string;
  const homes: string[] = [];
  const scope = `test-up-${randomBytes(4).toString("hex")}`;

  before(async function () {
    const missing = missingPodman();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    this.timeout(900_000);
    engine = await sharedPodman();
    image = await testAgentImage();
    repos = mkdtempSync(join(tmpdir(), "corral-up-docker-repos-"));
    chmodSync(repos, 0o755);
  });
  after(async () => {
    if (engine) {
      const ids = (await podman(["ps", "-aq", "--filter", `label=corral.dev/scope=${scope}`], engine.env)).split("\n").filter(Boolean);
      if (ids.length > 0) await podman(["rm", "--force", ...ids], engine.env).catch(() => undefined);
    }
    for (const dir of [...homes, repos]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A home of its own per test, so a stack still stopping cannot hold the next one's database. */
  const baseEnv = (): NodeJS.ProcessEnv => {
    const home = mkdtempSync(join(tmpdir(), "corral-up-docker-"));
    chmodSync(home, 0o755); // as root, the embedded PostgreSQL runs as postgres and must enter it
    homes.push(home);
    return corralUpEnv(home, {
      CORRAL_DOCKER_SCOPE: scope,
      // The run's file:// repository, at the same path inside the agent's container.
      CORRAL_DOCKER_MOUNTS: `${repos}:${repos}:rw`,
      CORRAL_DOCKER_NETWORK: undefined,
    });
  };

  it("runs a run in a container of the engine at --docker-host, on the host's network by default", async () => {
    const up = startCorralUp(["--runtime", "docker", "--docker-host", engine.url, "--agent-image", image], baseEnv());
    try {
      const { scheduler } = await up.ready;
      const root = mkdtempSync(join(repos, "run-"));
      chmodSync(root, 0o755);
      const remote = await createSeededRemote(root);
      // git in the container (uid 10001) serves only repositories its user owns; this process reads it through safe.directory.
      await run("chown", ["-R", "10001:10001", remote.bare]);
      await writeFile(join(root, ".home", ".gitconfig"), "[safe]\n\tdirectory = *\n");
      const result = await runCorral(
        ["run", "--repo", remote.url, "--base", "main", "--agent-command", "echo in-a-container > DOCKER.md", "--prompt", "p", "--wait", "--json"],
        { ...process.env, CORRAL_SCHEDULER_URL: scheduler },
        240_000,
      );
      assert.equal(result.code, 0, `${result.stderr}\n${up.output()}`);
      const finished = JSON.parse(result.stdout) as { runtime: string; result: { branch: string; commitSha: string } };
      assert.equal(finished.runtime, "RUNTIME_DOCKER");
      assert.equal(remoteBranch(root, remote.bare, finished.result.branch), finished.result.commitSha);
    } finally {
      await up.stop();
    }
  });

  it("refuses to start when the image is missing, naming it and the script that builds it", async () => {
    const result = await runCorral(["up", "--runtime", "docker", "--docker-host", engine.url, "--agent-image", "localhost/corral-agent-missing:1"], baseEnv(), 240_000);
    const output = result.stdout + result.stderr;
    assert.equal(result.code, 1, output);
    assert.match(output, /the agent image "localhost\/corral-agent-missing:1" is not on the engine at unix:\/\/.*deploy\/docker\/build-agent-image\.sh/);
  });
});
