import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CancelRequest } from "../../agent/src/pipeline/cancel-request.ts";
import { runPipeline, workspaceLayout, type PipelineSpec } from "../../agent/src/pipeline/run-pipeline.ts";
import { createSeededRemote, git, killGroup, remoteBranch, useTempDirs, waitForGroupGone, type SeededRemote } from "./support/git-fixtures.ts";
import { recordingObserver, testSpec } from "./support/pipeline-harness.ts";

const LATER_STEPS_SKIPPED = ["commit:skipped", "push:skipped"];

/** Whether a process group exists right now; checked before cancelling so that "gone" afterwards means something. */
function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("runPipeline", () => {
  const tempDir = useTempDirs();
  let root: string;
  let workDir: string;
  let remote: SeededRemote;
  const groups: (number | undefined)[] = [];
  afterEach(() => groups.splice(0).forEach(killGroup));

  beforeEach(async () => {
    root = await tempDir("pipeline");
    remote = await createSeededRemote(root);
    workDir = join(root, "work");
  });

  async function run(spec: PipelineSpec, options: { signal?: AbortSignal; onOutput?: Parameters<typeof recordingObserver>[0]; stepEnv?: Record<string, string> } = {}) {
    const recording = recordingObserver(options.onOutput);
    const result = await runPipeline({ spec, runId: "run-1", workDir, signal: options.signal ?? new AbortController().signal, observer: recording.observer, stepEnv: options.stepEnv });
    return { result, ...recording };
  }

  it("clones, runs the agent and the validation steps, commits and pushes the branch", async () => {
    const prompt = "Fix the README; don't $(touch pwned) \"now\"";
    const agent = [
      'test "$(cat {prompt_file})" = "$EXPECTED_PROMPT"', // the prompt arrives intact, through the file
      'test -z "${CORRAL_ATTACH_CREDENTIAL:-}"', // the agent's own secrets stay out of steps
      "printf 'run=%s repo=%s\\n' {run_id} {repo_dir}",
      "printf 'fixed\\n' >> README.md",
      'mkdir "new dir" && echo new > "new dir/a file.txt"',
      "rm doomed.txt",
    ].join(" && ");
    process.env.CORRAL_ATTACH_CREDENTIAL = "attach-secret";
    let outcome;
    try {
      outcome = await run(testSpec(remote.url, { agent: { commandTemplate: agent, prompt }, env: { EXPECTED_PROMPT: prompt } }));
    } finally {
      delete process.env.CORRAL_ATTACH_CREDENTIAL;
    }
    const { result, phases, started, finished, outputOf } = outcome;

    assert.equal(result.status, "succeeded", result.reason);
    assert.deepEqual(phases, ["preparing", "cloning", "agent", "validating", "committing", "pushing"]);
    assert.deepEqual(started.map((step) => `${step.name}:${step.kind}`), ["clone:clone", "agent:agent", "readme-fixed:validation", "commit:commit", "push:push"]);
    assert.ok(finished.every((step) => step.outcome === "succeeded"), JSON.stringify(finished));
    assert.equal(finished.find((step) => step.name === "agent")?.exitCode, 0);
    assert.match(outputOf("agent"), new RegExp(`run=run-1 repo=${workspaceLayout(workDir).repoDir}`));

    const { commitSha, branch, changedFiles } = result.result!;
    assert.equal(branch, "corral/run-1");
    assert.deepEqual([...changedFiles].sort(), ["README.md", "doomed.txt", "new dir/a file.txt"]);
    assert.equal(remoteBranch(root, remote.bare, branch), commitSha);
    const [author, committer, subject, parent] = git(root, ["--git-dir", remote.bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s|%P", `refs/heads/${branch}`]).trim().split("|");
    assert.equal(author, "Corral Bot <bot@corral.dev>");
    assert.equal(committer, "Corral Bot <bot@corral.dev>");
    assert.equal(subject, "Fix the README");
    assert.equal(parent, remote.second);
    const files = git(root, ["--git-dir", remote.bare, "ls-tree", "-r", "--name-only", commitSha]).trim().split("\n");
    assert.deepEqual(files.sort(), ["README.md", "new dir/a file.txt"], "the prompt file or git's home was committed");
  });

  for (const [label, baseRef, parent] of [["a tag", "v1", "first"], ["a commit sha", "FIRST", "first"]] as const) {
    it(`starts from ${label}`, async () => {
      const { result } = await run(testSpec(remote.url, { baseRef: baseRef === "FIRST" ? remote.first : baseRef }));
      assert.equal(result.status, "succeeded", result.reason);
      assert.equal(git(root, ["--git-dir", remote.bare, "rev-parse", `${result.result!.commitSha}^`]).trim(), remote[parent]);
      assert.equal(git(root, ["--git-dir", remote.bare, "show", `${result.result!.commitSha}:README.md`]), "hello\nfixed\n");
    });
  }

  it("stops at the first failing validation step, skips the rest and pushes nothing", async () => {
    const { result, started, finished, outcomes, outputOf } = await run(testSpec(remote.url, {
      validationSteps: [
        { name: "passes", command: "true" },
        { name: "lint", command: "echo 'lint: 2 problems' >&2; exit 3" },
        { name: "never", command: "touch never-ran" },
      ],
    }));
    assert.equal(result.status, "failed");
    assert.match(result.reason ?? "", /validation step "lint" failed: exited with status 3/);
    assert.deepEqual(outcomes(), ["clone:succeeded", "agent:succeeded", "passes:succeeded", "lint:failed", "never:skipped", ...LATER_STEPS_SKIPPED]);
    assert.equal(finished.find((step) => step.name === "lint")?.exitCode, 3);
    assert.ok(!started.some((step) => step.name === "never"));
    assert.match(outputOf("lint"), /lint: 2 problems/);
    assert.equal(existsSync(join(workspaceLayout(workDir).repoDir, "never-ran")), false);
    assert.equal(remoteBranch(root, remote.bare, "corral/run-1"), undefined);
    assert.equal(result.result, undefined);
  });

  it("fails a step that runs past its timeout, naming the step and the budget", async () => {
    const began = performance.now();
    const { result, outcomes } = await run(testSpec(remote.url, {
      validationSteps: [{ name: "slow-tests", command: "sleep 30", timeoutMs: 300 }],
      timeouts: { stepMs: 20_000, cloneMs: 20_000, graceMs: 500 },
    }));
    assert.equal(result.status, "failed");
    assert.equal(result.reason, 'validation step "slow-tests" timed out after 300 ms');
    assert.deepEqual(outcomes(), ["clone:succeeded", "agent:succeeded", "slow-tests:timed_out", ...LATER_STEPS_SKIPPED]);
    assert.ok(performance.now() - began < 10_000);
    assert.equal(remoteBranch(root, remote.bare, "corral/run-1"), undefined);
  });

  it("fails with a clear reason when the agent changes nothing, before validating", async () => {
    const { result, outcomes } = await run(testSpec(remote.url, { agent: { commandTemplate: "echo 'looked around'", prompt: "p" } }));
    assert.equal(result.status, "failed");
    assert.equal(result.reason, "the agent made no changes");
    assert.deepEqual(outcomes(), ["clone:succeeded", "agent:failed", "readme-fixed:skipped", ...LATER_STEPS_SKIPPED]);
  });

  it("fails before cloning when the template names an unknown placeholder", async () => {
    const { result, started, outcomes } = await run(testSpec(remote.url, { agent: { commandTemplate: "agent --task {task} {prompt_file}", prompt: "p" } }));
    assert.equal(result.status, "failed");
    assert.match(result.reason ?? "", /unknown placeholder \{task\}/);
    assert.deepEqual(started, []);
    assert.deepEqual(outcomes(), ["clone:skipped", "agent:skipped", "readme-fixed:skipped", ...LATER_STEPS_SKIPPED]);
  });

  it("fails the clone step cleanly for a repository that does not exist", async () => {
    const { result, outcomes } = await run(testSpec(`file://${root}/missing.git`));
    assert.equal(result.status, "failed");
    assert.match(result.reason ?? "", /step "clone" failed: git clone exited with status 128/);
    assert.deepEqual(outcomes(), ["clone:failed", "agent:skipped", "readme-fixed:skipped", ...LATER_STEPS_SKIPPED]);
  });

  /**
   * An onOutput that aborts the pipeline once the agent command prints its process group id
   * ("pgid=N ready"), noting the group, whether the command led it, and when it aborted.
   */
  function abortWhenReady(controller: AbortController, reason?: unknown) {
    const seen = { pgid: undefined as number | undefined, ledGroup: false, at: 0 };
    const onOutput: Parameters<typeof recordingObserver>[0] = (chunk) => {
      const match = /pgid=(\d+) ready/.exec(Buffer.from(chunk.data).toString());
      if (!match) return;
      seen.pgid = Number(match[1]);
      groups.push(seen.pgid);
      seen.ledGroup = groupExists(seen.pgid);
      seen.at = performance.now();
      controller.abort(reason);
    };
    return { seen, onOutput };
  }

  it("cancels the running step quickly, skips the rest and leaves no process behind", async () => {
    const controller = new AbortController();
    const { seen, onOutput } = abortWhenReady(controller, new CancelRequest("stopped by the user"));
    const { result, outcomes, finished } = await run(testSpec(remote.url, { agent: { commandTemplate: 'echo "pgid=$$ ready"; sleep 30', prompt: "p" } }), {
      signal: controller.signal,
      onOutput,
    });
    assert.ok(performance.now() - seen.at < 2_000, "cancelling took too long");
    assert.equal(result.status, "cancelled");
    assert.equal(result.reason, 'cancelled during step "agent": stopped by the user');
    assert.deepEqual(outcomes(), ["clone:succeeded", "agent:cancelled", "readme-fixed:skipped", ...LATER_STEPS_SKIPPED]);
    assert.equal(finished.find((step) => step.name === "agent")?.signal, "SIGTERM");
    assert.ok(seen.ledGroup, "the agent command did not lead its own process group");
    assert.ok(await waitForGroupGone(seen.pgid!), "the agent's processes survived the cancel");
    assert.equal(remoteBranch(root, remote.bare, "corral/run-1"), undefined);
  });

  it("SIGKILLs a step that ignores SIGTERM once the grace has passed", async () => {
    const controller = new AbortController();
    const { seen, onOutput } = abortWhenReady(controller);
    const { result, finished } = await run(testSpec(remote.url, {
      agent: { commandTemplate: "trap '' TERM; echo \"pgid=$$ ready\"; sleep 30 & wait; sleep 30", prompt: "p" },
      timeouts: { stepMs: 20_000, cloneMs: 20_000, graceMs: 400 },
    }), {
      signal: controller.signal,
      onOutput,
    });
    const took = performance.now() - seen.at;
    assert.equal(result.status, "cancelled");
    const agent = finished.find((step) => step.name === "agent");
    assert.equal(agent?.outcome, "cancelled");
    assert.equal(agent?.signal, "SIGKILL");
    assert.ok(took >= 380 && took < 4_000, `stopped ${took} ms after the abort with a 400 ms grace`);
    assert.ok(seen.ledGroup, "the agent command did not lead its own process group");
    assert.ok(await waitForGroupGone(seen.pgid!), "the agent's processes survived SIGKILL");
  });

  it("skips everything when cancelled before it starts", async () => {
    const { result, started, outcomes } = await run(testSpec(remote.url), { signal: AbortSignal.abort() });
    assert.equal(result.status, "cancelled");
    assert.deepEqual(started, []);
    assert.deepEqual(outcomes(), ["clone:skipped", "agent:skipped", "readme-fixed:skipped", ...LATER_STEPS_SKIPPED]);
  });
});
