import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, statSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSeededRemote, useTempDirs } from "../agent/support/git-fixtures.ts";
import { corralUpEnv, runCorral, startCorralUp, type CorralUpProcess } from "../support/corral-up.ts";

/** `corral up` on an embedded database in `home`, with no service token configured: up makes one. */
const startUp = (home: string) => startCorralUp([], corralUpEnv(home, { CORRAL_ARTIFACT_SERVICE_TOKEN: undefined }));

async function stop(up: CorralUpProcess): Promise<void> {
  assert.equal(await up.stop(), 0, up.output());
}

describe("corral up, then corral logs and corral artifacts with no token configured", function () {
  this.timeout(180_000);
  let home: string;
  const tempDir = useTempDirs();
  before(() => {
    home = mkdtempSync(join(tmpdir(), "corral-up-logs-"));
    chmodSync(home, 0o755); // as root, the embedded PostgreSQL runs as postgres and must enter it
  });
  after(() => rmSync(home, { recursive: true, force: true }));

  it("keeps a service token in CORRAL_HOME (0600) that logs and artifacts pick up, the same after a restart", async () => {
    let up = startUp(home);
    try {
      const urls = await up.ready;
      const tokenFile = join(home, "artifact-service-token");
      assert.match(up.output(), new RegExp(`^ {2}service token +${tokenFile} `, "m"));
      assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
      const token = readFileSync(tokenFile, "utf8").trim();
      assert.ok(token.length >= 32);

      const cliEnv: NodeJS.ProcessEnv = { ...process.env, CORRAL_HOME: home, CORRAL_SCHEDULER_URL: urls["scheduler"], CORRAL_ARTIFACT_URL: urls["artifact"] };
      delete cliEnv.CORRAL_ARTIFACT_SERVICE_TOKEN;
      const corral = (...args: string[]) => runCorral(args, cliEnv, 120_000);

      const remote = await createSeededRemote(await tempDir("up-logs"));
      const submitted = await corral("run", "--repo", remote.url, "--base", "main", "--agent-command", "echo 'hello from the agent'; sleep 1; echo 'bye from the agent'", "--prompt", "say hello");
      assert.equal(submitted.code, 0, submitted.stderr);
      const runId = submitted.stdout.trim();

      // Started right away: follows the live log until the agent finishes it at the run's end.
      const logs = await corral("logs", runId, "--follow");
      assert.equal(logs.code, 0, logs.stderr);
      assert.match(logs.stdout, /^\S+Z agent stdout \| hello from the agent$/m);
      assert.match(logs.stdout, /^\S+Z agent stdout \| bye from the agent$/m);
      assert.equal((await corral("logs", runId)).stdout, logs.stdout, "the finished log reads back the same");

      const listed = await corral("artifacts", "ls", runId);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /^attempts\/1\/run\.log +\S+ \S+ +complete +1 /m);
    } finally {
      await stop(up);
    }

    const before = readFileSync(join(home, "artifact-service-token"), "utf8");
    up = startUp(home);
    try {
      await up.ready;
      assert.equal(readFileSync(join(home, "artifact-service-token"), "utf8"), before, "the token survives a restart");
    } finally {
      await stop(up);
    }
  });
});
