import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CancelRequest } from "../../agent/src/pipeline/cancel-request.ts";
import { runStep, type OutputStream, type RunStepOptions } from "../../agent/src/pipeline/run-step.ts";
import { killGroup, useTempDirs, waitForGroupGone, waitForProcessGone } from "./support/git-fixtures.ts";

const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };

/**
 * Runs a step and records its output, picking up "pgid=N" (the leading shell's $$) and
 * "child=N" (a background process's $!) as the command prints them.
 */
function observed(options: Partial<RunStepOptions> & Pick<RunStepOptions, "command">) {
  const chunks: { stream: OutputStream; text: string; at: number }[] = [];
  let pgid: number | undefined;
  const children: number[] = [];
  const ready = Promise.withResolvers<void>();
  const done = runStep({
    cwd: "/",
    env,
    graceMs: 5_000,
    ...options,
    onOutput(stream, data) {
      const text = Buffer.from(data).toString("utf8");
      chunks.push({ stream, text, at: performance.now() });
      const match = /pgid=(\d+)/.exec(text);
      if (match) pgid = Number(match[1]);
      for (const child of text.matchAll(/child=(\d+)/g)) children.push(Number(child[1]));
      if (text.includes("ready")) ready.resolve();
    },
  });
  const text = (stream: OutputStream) => chunks.filter((chunk) => chunk.stream === stream).map((chunk) => chunk.text).join("");
  return { done, ready: ready.promise, chunks, text, children, pgid: () => pgid };
}

/** Every process the step started is gone, and the group it led with them. */
async function assertAllGone(step: ReturnType<typeof observed>, expectedChildren: number): Promise<void> {
  assert.equal(step.children.length, expectedChildren, "the command did not report its children");
  for (const child of step.children) assert.ok(await waitForProcessGone(child), `process ${child} survived its step`);
  assert.ok(await waitForGroupGone(step.pgid()!), "processes of the group survived");
}

/** Proves the step leads a process group of its own, so that "group gone" later means something. */
function assertLeadsGroup(step: ReturnType<typeof observed>): void {
  assert.doesNotThrow(() => process.kill(-step.pgid()!, 0), "the step does not lead its own process group");
}

describe("runStep", function () {
  const tempDir = useTempDirs();
  const groups: (number | undefined)[] = [];
  afterEach(() => groups.splice(0).forEach(killGroup));

  it("streams stdout and stderr chunks while the command runs", async () => {
    const step = observed({ command: "printf one; sleep 0.5; printf two >&2" });
    const result = await step.done;
    const finished = performance.now();
    assert.equal(result.outcome, "succeeded");
    assert.equal(result.exitCode, 0);
    assert.equal(step.text("stdout"), "one");
    assert.equal(step.text("stderr"), "two");
    assert.ok(finished - step.chunks[0]!.at >= 400, "the first chunk arrived only at the end");
  });

  it("resolves a failing command as failed with its exit status", async () => {
    const result = await runStep({ command: "exit 3", cwd: "/", env, graceMs: 100 });
    assert.equal(result.outcome, "failed");
    assert.equal(result.exitCode, 3);
    assert.match(result.message ?? "", /status 3/);
  });

  it("runs an argv without a shell, in the cwd, with exactly the given env and stdin closed", async () => {
    const dir = await tempDir("step");
    const tricky = `a b; $(echo no) 'q'`;
    const step = observed({
      command: ["/bin/sh", "-c", 'printf "%s|%s|%s|%s|" "$1" "$FOO" "$PWD" "${HOME:-none}"; cat', "sh", tricky],
      cwd: dir,
      env: { ...env, FOO: "bar" },
      timeoutMs: 5_000,
    });
    const result = await step.done;
    assert.equal(result.outcome, "succeeded", "cat waited for stdin: it was not closed");
    assert.equal(step.text("stdout"), `${tricky}|bar|${dir}|none|`);
  });

  it("writes the given input to stdin, then closes it", async () => {
    const step = observed({ command: ["cat"], input: "from memory", timeoutMs: 5_000 });
    assert.equal((await step.done).outcome, "succeeded");
    assert.equal(step.text("stdout"), "from memory");
  });

  it("fails with a message when the cwd is missing or the program does not exist", async () => {
    const missing = await runStep({ command: "true", cwd: "/nonexistent/dir", env, graceMs: 100 });
    assert.equal(missing.outcome, "failed");
    assert.match(missing.message ?? "", /\/nonexistent\/dir/);
    const noProgram = await runStep({ command: ["/nonexistent/program"], cwd: "/", env, graceMs: 100 });
    assert.equal(noProgram.outcome, "failed");
    assert.match(noProgram.message ?? "", /\/nonexistent\/program/);
  });

  it("on timeout terminates the whole group, background grandchildren included", async () => {
    const step = observed({ command: 'echo "pgid=$$"; sleep 30 & echo "child=$!"; sleep 30 & echo "child=$!"; wait', timeoutMs: 300 });
    const result = await step.done;
    groups.push(step.pgid());
    assert.equal(result.outcome, "timed_out");
    assert.match(result.message ?? "", /300 ms/);
    assert.ok(result.durationMs < 3_000, `took ${result.durationMs} ms although SIGTERM suffices`);
    await assertAllGone(step, 2);
  });

  it("SIGKILLs a group that ignores SIGTERM once the grace has passed", async () => {
    const step = observed({ command: "trap '' TERM; echo \"pgid=$$\"; sleep 30 & echo \"child=$!\"; wait; sleep 30", timeoutMs: 200, graceMs: 500 });
    const result = await step.done;
    groups.push(step.pgid());
    assert.equal(result.outcome, "timed_out");
    assert.equal(result.signal, "SIGKILL");
    assert.ok(result.durationMs >= 650, `resolved after ${result.durationMs} ms, before the grace ended`);
    assert.ok(result.durationMs < 4_000, `took ${result.durationMs} ms`);
    await assertAllGone(step, 1);
  });

  it("cancels on abort: SIGTERM to the group, quickly", async () => {
    const controller = new AbortController();
    const step = observed({ command: 'sleep 30 & echo "child=$!"; echo "pgid=$$ ready"; wait', signal: controller.signal });
    await step.ready;
    assertLeadsGroup(step);
    const aborted = performance.now();
    controller.abort();
    const result = await step.done;
    groups.push(step.pgid());
    assert.equal(result.outcome, "cancelled");
    assert.equal(result.signal, "SIGTERM");
    assert.ok(performance.now() - aborted < 2_000, "cancel took too long");
    await assertAllGone(step, 1);
  });

  it("takes the grace of a CancelRequest over its own", async () => {
    const controller = new AbortController();
    const step = observed({ command: "trap '' TERM; sleep 30 & echo \"child=$! pgid=$$ ready\"; wait", signal: controller.signal, graceMs: 60_000 });
    await step.ready;
    assertLeadsGroup(step);
    const aborted = performance.now();
    controller.abort(new CancelRequest("user pressed stop", 300));
    const result = await step.done;
    groups.push(step.pgid());
    const took = performance.now() - aborted;
    assert.equal(result.outcome, "cancelled");
    assert.equal(result.signal, "SIGKILL");
    assert.match(result.message ?? "", /user pressed stop/);
    assert.ok(took >= 280 && took < 3_000, `cancel took ${took} ms with a 300 ms grace`);
    await assertAllGone(step, 1);
  });

  it("does not start when the signal is already aborted", async () => {
    const dir = await tempDir("step");
    const result = await runStep({ command: "touch started", cwd: dir, env, graceMs: 100, signal: AbortSignal.abort() });
    assert.equal(result.outcome, "cancelled");
    assert.equal(existsSync(join(dir, "started")), false);
  });

  it("terminates background processes a successful command leaves behind", async () => {
    const step = observed({ command: 'sleep 30 & echo "pgid=$$ child=$!"', graceMs: 1_000 });
    const result = await step.done;
    groups.push(step.pgid());
    assert.equal(result.outcome, "succeeded");
    assert.ok(result.durationMs < 3_000, `took ${result.durationMs} ms`);
    await assertAllGone(step, 1);
  });
});
