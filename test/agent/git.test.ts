import assert from "node:assert/strict";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createGit, createGitEnvironment, type Git, type GitResult } from "../../agent/src/pipeline/git.ts";
import { createSeededRemote, git, remoteBranch, useTempDirs, type SeededRemote } from "./support/git-fixtures.ts";

const call = { timeoutMs: 30_000 };
const identity = { authorName: "Corral Bot", authorEmail: "bot@corral.dev", message: "Fix the README" };

function value<T>(result: GitResult<T>): T {
  if (!result.ok) assert.fail(`git step failed: ${result.failure.outcome}: ${result.failure.message}`);
  return result.value;
}

describe("git steps", () => {
  const tempDir = useTempDirs();
  let root: string;
  let remote: SeededRemote;
  let repoDir: string;
  let steps: Git;

  beforeEach(async () => {
    root = await tempDir("git");
    remote = await createSeededRemote(root);
    repoDir = join(root, "work", "repo");
    await mkdir(join(root, "work", "home"), { recursive: true });
    steps = createGit({ repoDir, env: createGitEnvironment(join(root, "work", "home")), graceMs: 1_000 });
  });

  for (const [label, ref, expected] of [
    ["a branch", "main", "second"],
    ["an annotated tag", "v1", "first"],
    ["a full commit sha", "FIRST", "first"],
    ["an abbreviated sha", "FIRST7", "first"],
    ["a ref the clone does not fetch", "refs/hidden/extra", "hidden"],
  ] as const) {
    it(`clones and checks out ${label}`, async () => {
      const baseRef = ref === "FIRST" ? remote.first : ref === "FIRST7" ? remote.first.slice(0, 7) : ref;
      const { baseCommit } = value(await steps.clone({ ...call, url: remote.url, baseRef }));
      assert.equal(baseCommit, remote[expected]);
      assert.equal(git(root, ["rev-parse", "HEAD"], repoDir).trim(), remote[expected]);
      assert.equal(existsSync(join(repoDir, "hidden.txt")), expected === "hidden");
    });
  }

  it("fails cleanly, naming it, for a base ref that does not exist", async () => {
    const result = await steps.clone({ ...call, url: remote.url, baseRef: "no-such-branch" });
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.failure.outcome === "failed");
    assert.match(!result.ok ? result.failure.message ?? "" : "", /no-such-branch/);
  });

  it("reports changes, commits them with the configured identity, lists them and pushes the branch", async () => {
    const { baseCommit } = value(await steps.clone({ ...call, url: remote.url, baseRef: "main" }));
    value(await steps.createBranch({ ...call, branch: "corral/run-1" }));
    assert.equal(value(await steps.hasChanges({ ...call, baseCommit })), false);

    await writeFile(join(repoDir, "README.md"), "changed\n");
    await mkdir(join(repoDir, "new dir"));
    await writeFile(join(repoDir, "new dir", "a file.txt"), "new\n");
    await rm(join(repoDir, "doomed.txt"));
    assert.equal(value(await steps.hasChanges({ ...call, baseCommit })), true);

    const { sha, committed } = value(await steps.commitAll({ ...call, ...identity }));
    assert.equal(committed, true);
    assert.deepEqual(git(root, ["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s|%P", sha], repoDir).trim().split("|"), [
      "Corral Bot <bot@corral.dev>", "Corral Bot <bot@corral.dev>", "Fix the README", baseCommit,
    ]);
    assert.equal(git(root, ["symbolic-ref", "HEAD"], repoDir).trim(), "refs/heads/corral/run-1");
    assert.deepEqual(value(await steps.changedFiles({ ...call, baseCommit })).sort(), ["README.md", "doomed.txt", "new dir/a file.txt"]);

    value(await steps.push({ ...call, url: remote.url, branch: "corral/run-1" }));
    assert.equal(remoteBranch(root, remote.bare, "corral/run-1"), sha);
  });

  it("says when there is nothing to commit", async () => {
    const { baseCommit } = value(await steps.clone({ ...call, url: remote.url, baseRef: "main" }));
    const result = value(await steps.commitAll({ ...call, ...identity }));
    assert.deepEqual(result, { sha: baseCommit, committed: false });
  });

  it("counts a commit the agent made itself as a change", async () => {
    const { baseCommit } = value(await steps.clone({ ...call, url: remote.url, baseRef: "main" }));
    await writeFile(join(repoDir, "README.md"), "agent committed\n");
    git(root, ["commit", "--quiet", "-am", "by the agent"], repoDir);
    assert.equal(value(await steps.hasChanges({ ...call, baseCommit })), true);
    const { committed, sha } = value(await steps.commitAll({ ...call, ...identity }));
    assert.equal(committed, false);
    assert.notEqual(sha, baseCommit);
  });

  it("does not run hooks planted in .git, nor honour the sandbox's git configuration", async () => {
    const { baseCommit } = value(await steps.clone({ ...call, url: remote.url, baseRef: "main" }));
    const marker = join(root, "hook-ran");
    for (const hook of ["pre-commit", "commit-msg", "post-commit", "pre-push"]) {
      await writeFile(join(repoDir, ".git", "hooks", hook), `#!/bin/sh\ntouch ${marker}\n`);
      await chmod(join(repoDir, ".git", "hooks", hook), 0o755);
    }
    // A sandbox whose user config would rename the author and whose GIT_* variables point elsewhere.
    const sandboxHome = join(root, "sandbox-home");
    await mkdir(sandboxHome);
    await writeFile(join(sandboxHome, ".gitconfig"), "[user]\n\tname = Intruder\n\temail = intruder@example.com\n");
    const env = createGitEnvironment(join(root, "work", "home"), { ...process.env, HOME: sandboxHome, GIT_DIR: "/nonexistent", GIT_AUTHOR_NAME: "Intruder" });
    const isolated = createGit({ repoDir, env, graceMs: 1_000 });
    await writeFile(join(repoDir, "README.md"), "changed\n");
    const { sha } = value(await isolated.commitAll({ ...call, ...identity }));
    value(await isolated.push({ ...call, url: remote.url, branch: "hooks" }));
    assert.equal(existsSync(marker), false, "a hook ran");
    assert.equal(git(root, ["log", "-1", "--format=%an", sha], repoDir).trim(), "Corral Bot");
    assert.notEqual(sha, baseCommit);
    assert.ok(!(await readFile(join(repoDir, ".git", "config"), "utf8")).includes("Intruder"));
  });

  it("refuses an invalid branch name", async () => {
    value(await steps.clone({ ...call, url: remote.url, baseRef: "main" }));
    const result = await steps.createBranch({ ...call, branch: "bad..name" });
    assert.ok(!result.ok);
    assert.match(result.failure.message ?? "", /invalid branch name/);
  });

  it("gives the whole step one budget and reports the timeout against it", async () => {
    const result = await steps.clone({ timeoutMs: 1, url: remote.url, baseRef: "main" });
    assert.ok(!result.ok);
    assert.equal(result.failure.outcome, "timed_out");
    assert.match(result.failure.message ?? "", /timed out after 1 ms/);
  });
});
