import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createSeededRemote, remoteBranch, useTempDirs } from "../agent/support/git-fixtures.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";

const CLI = fileURLToPath(new URL("../../cli/bin/corral.js", import.meta.url));

describe("the corral CLI", function () {
  this.timeout(60_000);
  let stack: StackFixture;
  const tempDir = useTempDirs();
  before(async () => {
    stack = await startStackFixture();
  });
  after(() => stack.close());

  const corral = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [CLI, ...args], { env: { ...process.env, CORRAL_SCHEDULER_URL: stack.scheduler.server.url }, timeout: 50_000 }, (_error, stdout, stderr) =>
        resolve({ code: child.exitCode ?? -1, stdout, stderr }),
      );
    });

  it("run --wait shows live progress, exits 0 when the run completed, and the branch exists", async () => {
    const root = await tempDir("cli");
    const remote = await createSeededRemote(root);
    const result = await corral("run", "--repo", remote.url, "--base", "main", "--agent-command", "echo 'from the agent'; cat {prompt_file} >> README.md", "--prompt", "more docs", "--validate", "docs=grep -q 'more docs' README.md", "--wait");
    assert.equal(result.code, 0, result.stderr + result.stdout);
    // Dispatch may be quicker than the watch: the first state shown is whatever the run is in then.
    assert.match(result.stdout, /^run \S+ (queued|launching|running)$/m);
    assert.match(result.stdout, /^run \S+ completed$/m);
    assert.match(result.stdout, /^▶ agent$/m);
    assert.match(result.stdout, /│ from the agent/);
    assert.match(result.stdout, /^✔ docs \(/m);
    const branch = /^branch +(\S+)$/m.exec(result.stdout)![1]!;
    const commit = /^commit +(\S+)$/m.exec(result.stdout)![1]!;
    assert.equal(remoteBranch(root, remote.bare, branch), commit);
  });

  it("run --wait --json prints the final run as JSON and exits 1 when it failed", async () => {
    const root = await tempDir("cli");
    const remote = await createSeededRemote(root);
    const result = await corral("run", "--repo", remote.url, "--base", "main", "--agent-command", "exit 7", "--prompt", "fail", "--wait", "--json");
    assert.equal(result.code, 1);
    const run = JSON.parse(result.stdout) as { status: string; reason: string };
    assert.equal(run.status, "RUN_STATUS_FAILED");
    assert.match(run.reason, /agent/);
  });

  it("cancel stops a running run; get and ls show it", async () => {
    const root = await tempDir("cli");
    const remote = await createSeededRemote(root);
    const submitted = await corral("run", "--repo", remote.url, "--base", "main", "--agent-command", "sleep 300", "--prompt", "wait");
    assert.equal(submitted.code, 0, submitted.stderr);
    const runId = submitted.stdout.trim();
    const deadline = Date.now() + 20_000;
    while ((await stack.client.getRun({ runId })).run?.currentStep !== "agent") {
      assert.ok(Date.now() < deadline, "the agent step should start");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const cancelled = await corral("cancel", runId, "--reason", "from the test");
    assert.equal(cancelled.code, 0, cancelled.stderr);
    const watched = await corral("watch", runId, "--no-logs");
    assert.equal(watched.code, 1, "watch exits non-zero for a run that did not complete");
    assert.match(watched.stdout, /^status +cancelled$/m);
    const got = await corral("get", runId, "--json");
    assert.equal((JSON.parse(got.stdout) as { cancelReason: string }).cancelReason, "from the test");
    // A cancelled attempt still finishes its run log: everything it had was stored.
    assert.match((await corral("get", runId)).stdout, /^artifacts +complete$/m);
    const listed = await corral("ls", "--status", "cancelled");
    assert.match(listed.stdout, new RegExp(`^${runId} +cancelled +local`, "m"));
  });

  it("names every rejected field, and refuses bad flags with exit 2", async () => {
    const rejected = await corral("run", "--repo", "nope", "--base", "main", "--agent-command", "x");
    assert.equal(rejected.code, 1);
    assert.match(rejected.stderr, /spec\.repository_url: /);
    assert.match(rejected.stderr, /spec\.agent\.prompt: /);
    assert.equal((await corral("run", "--bogus")).code, 2);
    assert.equal((await corral("cancel")).code, 2);
    assert.equal((await corral("ls", "--status", "sleeping")).code, 2);
    assert.equal((await corral("nonsense")).code, 2);
  });

  it("says where it looked when the scheduler is unreachable", async () => {
    const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [CLI, "ls"], { env: { ...process.env, CORRAL_SCHEDULER_URL: "http://127.0.0.1:1" } }, (_e, _o, stderr) => resolve({ code: child.exitCode ?? -1, stderr }));
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot reach the scheduler at http:\/\/127\.0\.0\.1:1/);
  });
});
