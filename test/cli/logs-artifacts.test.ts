import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { UploadRequest } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { startSchedulerFixture, type SchedulerFixture } from "../support/scheduler.ts";
import { blobFiles, bytes, chunk, finish, header, MiB, SERVICE_TOKEN, sha256, startArtifactFixture, upload, wholeUpload, type ArtifactFixture } from "../artifact/support.ts";
import { deadUrl } from "../support/artifact-service.ts";

const CLI = fileURLToPath(new URL("../../cli/bin/corral.js", import.meta.url));

interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** The CLI process's peak resident memory, in bytes (VmHWM, read while it ran). */
  peakRss: number;
}

/** A `corral` process: its output so far, and its end. */
function start(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let stderr = "";
  let peakRss = 0;
  child.stdout.on("data", (data: Buffer) => out.push(data));
  child.stderr.on("data", (data: Buffer) => (stderr += data.toString()));
  // The node process is the child itself (bin/corral.js imports the CLI when already on Node 24,
  // or re-executes it; its status is what we can see).
  const sampler = setInterval(() => {
    try {
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (hwm) peakRss = Math.max(peakRss, Number(hwm[1]) * 1024);
    } catch {
      // gone
    }
  }, 20);
  const done = new Promise<Result>((resolve) => {
    child.once("close", (code) => {
      clearInterval(sampler);
      resolve({ code, stdout: Buffer.concat(out), stderr, peakRss });
    });
  });
  return { child, stdout: () => Buffer.concat(out).toString(), stderr: () => stderr, done };
}

/** Pushes messages into an upload stream as the test decides: a live run log. */
function liveUpload(fx: ArtifactFixture, runId: string, name: string) {
  const queue: UploadRequest["message"][] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  async function* messages(): AsyncGenerator<UploadRequest["message"]> {
    for (;;) {
      while (queue.length > 0) yield queue.shift()!;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  }
  const push = (message: UploadRequest["message"]) => {
    queue.push(message);
    wake?.();
  };
  const content: Buffer[] = [];
  let offset = 0;
  push(header({ runId, name, contentType: "text/plain" }));
  const call = upload(fx.client, SERVICE_TOKEN, messages());
  call.catch(() => {});
  return {
    append(text: string | Buffer) {
      const data = Buffer.from(text);
      for (let at = 0; at < data.length; at += MiB) push(chunk(offset + at, data.subarray(at, at + MiB)));
      offset += data.length;
      content.push(data);
    },
    async finish() {
      const all = Buffer.concat(content);
      push(finish(sha256(all), all.length));
      ended = true;
      wake?.();
      return call;
    },
    /** The stream ends without finish: the agent was lost. */
    async abandon() {
      ended = true;
      wake?.();
      return call;
    },
    content: () => Buffer.concat(content),
  };
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("corral logs and corral artifacts", function () {
  this.timeout(120_000);
  let fx: ArtifactFixture;
  let scheduler: SchedulerFixture;
  let home: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    fx = await startArtifactFixture();
    // GetRun only: no dispatch, no agents.
    scheduler = await startSchedulerFixture({ CORRAL_MAX_CONCURRENT_RUNS: "0", CORRAL_LOCAL_WARM_AGENTS: "0" }, fx.database);
    // No token file here unless a test writes one: the CLI must not find a developer's .corral.
    home = await mkdtemp(join(tmpdir(), "corral-cli-home-"));
    env = {
      ...process.env,
      CORRAL_SCHEDULER_URL: scheduler.url,
      CORRAL_ARTIFACT_URL: fx.url,
      CORRAL_ARTIFACT_SERVICE_TOKEN: SERVICE_TOKEN,
      CORRAL_HOME: home,
    };
  });
  after(async () => {
    await scheduler?.close();
    await fx?.close();
    await rm(home, { recursive: true, force: true });
  });

  const corral = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => start(args, { ...env, ...extraEnv }).done;
  const put = (run: SeededRun, name: string, data: Buffer) => upload(fx.client, SERVICE_TOKEN, wholeUpload({ runId: run.runId, name }, data));
  const endRun = (run: SeededRun, status = "completed") =>
    fx.sql.run("update runs set status = ?, finished_at = now() where id = ?", [status, run.runId]);

  describe("corral logs", () => {
    it("prints a finished log whole, of the current attempt unless --attempt names another", async () => {
      const run = await seedLaunchedRun(fx.sql, { attempt: 2 });
      const first = Buffer.from("2026-11-29T10:00:00.000Z agent stdout | attempt one\n");
      // Several download windows' worth, so the CLI reads it in pieces.
      const second = Buffer.concat([Buffer.from("2026-11-29T10:05:00.000Z agent stdout | attempt two\n"), bytes(20 * MiB, 1)]);
      await put(run, "attempts/1/run.log", first);
      await put(run, "attempts/2/run.log", second);
      await endRun(run, "failed");

      const current = await corral(["logs", run.runId]);
      assert.equal(current.code, 0, current.stderr);
      assert.equal(sha256(current.stdout), sha256(second));
      const older = await corral(["logs", run.runId, "--attempt", "1"]);
      assert.equal(older.code, 0, older.stderr);
      assert.equal(older.stdout.toString(), first.toString());
      const missing = await corral(["logs", run.runId, "--attempt", "3"]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /has no attempt 3 \(its latest is 2\)/);
    });

    it("--follow tails a live log as it grows, and ends when the upload is finished", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const log = liveUpload(fx, run.runId, "attempts/1/run.log");
      log.append("line one\n");
      const tail = start(["logs", run.runId, "--follow"], env);
      await eventually(() => tail.stdout() === "line one\n", "the first line");
      log.append("line two\n");
      await eventually(() => tail.stdout() === "line one\nline two\n", "the second line, while the run goes");
      log.append(Buffer.concat([bytes(3 * MiB, 2), Buffer.from("\nlast line\n")]));
      const response = await log.finish();
      assert.equal(response.artifact?.complete, true);
      const result = await tail.done;
      assert.equal(result.code, 0, result.stderr);
      assert.ok(result.stdout.equals(log.content()), "exactly the log, nothing twice");
      assert.equal(result.stderr, "");
    });

    it("--follow waits for a run to start and its log to appear", async () => {
      const run = await seedLaunchedRun(fx.sql);
      await fx.sql.run("update runs set status = 'queued', current_attempt = 0 where id = ?", [run.runId]);
      const tail = start(["logs", run.runId, "--follow"], env);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(tail.child.exitCode, null, `still waiting: ${tail.stderr()}`);
      await fx.sql.run("update runs set status = 'running', current_attempt = 1 where id = ?", [run.runId]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const log = liveUpload(fx, run.runId, "attempts/1/run.log");
      log.append("started late\n");
      await eventually(() => tail.stdout() === "started late\n", "the log once it exists");
      await log.finish();
      const result = await tail.done;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString(), "started late\n");
    });

    it("--follow stops with what is stored when the run ends and its log is never finished (a lost agent)", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const log = liveUpload(fx, run.runId, "attempts/1/run.log");
      log.append("before the agent was lost\n");
      const tail = start(["logs", run.runId, "--follow"], env);
      await eventually(() => tail.stdout() === "before the agent was lost\n", "the stored line");
      await log.abandon();
      await endRun(run, "failed");
      const result = await tail.done;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString(), "before the agent was lost\n");
      assert.match(result.stderr, /run \S+ failed, but its log was not finished \(the agent may have been lost\); printed the 26 bytes stored/);
    });

    it("keeps its memory flat, whatever the log's size", async () => {
      const small = await seedLaunchedRun(fx.sql);
      await put(small, "attempts/1/run.log", bytes(64 * 1024, 3));
      const run = await seedLaunchedRun(fx.sql);
      const big = bytes(256 * MiB, 3);
      await put(run, "attempts/1/run.log", big);
      await endRun(run);
      // The CLI's own size (Node, its modules) reading a 64 KiB log.
      const baseline = await corral(["logs", small.runId]);
      assert.equal(baseline.code, 0, baseline.stderr);
      // --artifact-url wins over CORRAL_ARTIFACT_URL.
      const whole = await corral(["logs", run.runId, "--artifact-url", fx.url], { CORRAL_ARTIFACT_URL: "http://127.0.0.1:1" });
      assert.equal(whole.code, 0, whole.stderr);
      assert.equal(sha256(whole.stdout), sha256(big));
      const followed = await corral(["logs", run.runId, "--follow"]);
      assert.equal(followed.code, 0, followed.stderr);
      assert.equal(followed.stdout.length, big.length, "bytes of the followed log");
      assert.equal(sha256(followed.stdout), sha256(big));
      // One Download call for the whole log would keep all 256 MiB reachable in the client
      // (connect-es #1524): measured +270 MiB. Windows of 8 MiB leave what the collector has not
      // yet reclaimed (V8 collects after some 64 MiB of external garbage): measured +70 MiB.
      assert.ok(baseline.peakRss > 0, "the sampler saw the process");
      for (const result of [whole, followed]) {
        const growth = result.peakRss - baseline.peakRss;
        assert.ok(growth < 128 * MiB, `peak RSS grew by ${Math.round(growth / MiB)} MiB for a 256 MiB log`);
      }
    });

    it("says what is missing: the run, its attempt, its log; and refuses bad arguments", async () => {
      const unknown = await corral(["logs", randomUUID()]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /^corral logs: no run [0-9a-f-]{36}\n$/);
      const queued = await seedLaunchedRun(fx.sql);
      await fx.sql.run("update runs set status = 'queued', current_attempt = 0 where id = ?", [queued.runId]);
      assert.match((await corral(["logs", queued.runId])).stderr, /is queued and has not started an attempt yet, so it has no log; --follow waits for it/);
      const running = await seedLaunchedRun(fx.sql);
      assert.match((await corral(["logs", running.runId])).stderr, /has no log for attempt 1 yet/);
      await endRun(running, "failed");
      const ended = await corral(["logs", running.runId]);
      assert.equal(ended.code, 1);
      assert.match(ended.stderr, /has no log for attempt 1: its agent stored none/);
      const followedNothing = await corral(["logs", running.runId, "--follow"]);
      assert.equal(followedNothing.code, 1);
      assert.match(followedNothing.stderr, /its agent stored none/);
      const malformed = await corral(["logs", "not-a-uuid"]);
      assert.equal(malformed.code, 1);
      assert.match(malformed.stderr, /^corral logs: no run not-a-uuid\n$/);
      for (const args of [["logs"], ["logs", randomUUID(), "--attempt", "0"], ["logs", randomUUID(), "--attempt", "two"], ["logs", randomUUID(), "--bogus"]]) {
        assert.equal((await corral(args)).code, 2, args.join(" "));
      }
    });

    it("names the artifact service's URL when it is unreachable, and the token's source when it is refused or missing", async () => {
      const run = await seedLaunchedRun(fx.sql);
      await put(run, "attempts/1/run.log", Buffer.from("x\n"));
      const dead = await deadUrl();
      const unreachable = await corral(["logs", run.runId], { CORRAL_ARTIFACT_URL: dead });
      assert.equal(unreachable.code, 1);
      assert.match(unreachable.stderr, new RegExp(`cannot reach the artifact service at ${dead.replace(/[.]/g, "\\.")}`));
      const refused = await corral(["logs", run.runId], { CORRAL_ARTIFACT_SERVICE_TOKEN: "not-the-token-of-this-stack-0123456789abcdef" });
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /Unauthenticated: .*the token from CORRAL_ARTIFACT_SERVICE_TOKEN was refused/);
      assert.doesNotMatch(refused.stderr, /not-the-token/, "the token itself is never printed");
      const none = await corral(["logs", run.runId], { CORRAL_ARTIFACT_SERVICE_TOKEN: "" });
      assert.equal(none.code, 1);
      assert.match(none.stderr, new RegExp(`no artifact service token: set CORRAL_ARTIFACT_SERVICE_TOKEN, or run this where \`corral up\` runs \\(it writes the token of its stack to ${home}/artifact-service-token`));
      // The file `corral up` writes is where the CLI looks when the variable is unset.
      await writeFile(join(home, "artifact-service-token"), `${SERVICE_TOKEN}\n`, { mode: 0o600 });
      try {
        const fromFile = await corral(["logs", run.runId], { CORRAL_ARTIFACT_SERVICE_TOKEN: "" });
        assert.equal(fromFile.code, 0, fromFile.stderr);
        assert.equal(fromFile.stdout.toString(), "x\n");
      } finally {
        await rm(join(home, "artifact-service-token"));
      }
    });
  });

  describe("corral artifacts", () => {
    it("ls lists a run's artifacts as a table and as JSON", async () => {
      const run = await seedLaunchedRun(fx.sql);
      await put(run, "attempts/1/change.diff", Buffer.from("diff --git a/x b/x\n"));
      await put(run, "attempts/1/files/report.xml", bytes(3 * MiB, 4));
      const live = liveUpload(fx, run.runId, "attempts/1/run.log");
      live.append("going\n");
      await eventually(async () => (await fx.sql.one("select 1 from artifacts where run_id = ? and name = 'attempts/1/run.log'", [run.runId])) !== undefined, "the live log's row");
      await new Promise((resolve) => setTimeout(resolve, 200));

      const table = await corral(["artifacts", "ls", run.runId]);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.toString().trimEnd().split("\n");
      assert.match(lines[0]!, /^NAME +SIZE +STATE +ATTEMPT +SHA256 +CREATED$/);
      assert.match(lines[1]!, new RegExp(`^attempts/1/change\\.diff +19 B +complete +1 +${sha256(Buffer.from("diff --git a/x b/x\n")).slice(0, 12)} +\\S+ ago$`));
      assert.match(lines[2]!, /^attempts\/1\/files\/report\.xml +3\.0 MiB +complete +1 /);
      assert.match(lines[3]!, /^attempts\/1\/run\.log +6 B +uploading +1 +- /);
      assert.equal(lines.length, 4);

      const json = await corral(["artifacts", "ls", run.runId, "--json", "--prefix", "attempts/1/files/"]);
      const parsed = JSON.parse(json.stdout.toString()) as { name: string; size: string; sha256: string; complete: boolean }[];
      assert.deepEqual(parsed.map((a) => [a.name, a.size, a.sha256, a.complete]), [["attempts/1/files/report.xml", String(3 * MiB), sha256(bytes(3 * MiB, 4)), true]]);
      await live.finish();

      const empty = await seedLaunchedRun(fx.sql);
      const none = await corral(["artifacts", "ls", empty.runId]);
      assert.equal(none.code, 0);
      assert.equal(none.stdout.length, 0);
      assert.match(none.stderr, /has no artifacts/);
      assert.equal((await corral(["artifacts", "ls", empty.runId, "--json"])).stdout.toString(), "[]\n");
      const unknown = await corral(["artifacts", "ls", randomUUID()]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no run /);
    });

    it("get writes an artifact to stdout, or to a file whole, with its digest checked and a progress bar", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const data = bytes(12 * MiB + 5, 5);
      await put(run, "attempts/1/files/big.bin", data);
      const toStdout = await corral(["artifacts", "get", run.runId, "attempts/1/files/big.bin"]);
      assert.equal(toStdout.code, 0, toStdout.stderr);
      assert.ok(toStdout.stdout.equals(data));
      assert.equal(toStdout.stderr, "", "no progress bar when stderr is not a terminal");

      const dir = await mkdtemp(join(tmpdir(), "corral-cli-get-"));
      try {
        const target = join(dir, "big.bin");
        const toFile = await corral(["artifacts", "get", run.runId, "attempts/1/files/big.bin", "-o", target, "--progress"]);
        assert.equal(toFile.code, 0, toFile.stderr);
        assert.equal(toFile.stdout.length, 0);
        assert.ok((await readFile(target)).equals(data));
        assert.deepEqual(await readdir(dir), ["big.bin"], "no temporary file left");
        // The bar is redrawn in place and ends complete.
        assert.match(toFile.stderr, /\rattempts\/1\/files\/big\.bin \[#+\] 100% {2}12\.0 MiB \/ 12\.0 MiB {2}\S+ \S+\/s\n$/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("get refuses bytes that do not match the artifact's digest, and leaves no file", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const data = bytes(2 * MiB, 6);
      await put(run, "report.bin", data);
      // Damage the stored blob on disk, keeping its size: the service streams what it has.
      const digest = sha256(data);
      const path = join(fx.storeDir, "blobs", (await blobFiles(fx)).find((f) => f.endsWith(digest))!);
      const damaged = Buffer.from(data);
      damaged[MiB] = damaged[MiB]! ^ 0xff;
      await writeFile(path, damaged);
      const dir = await mkdtemp(join(tmpdir(), "corral-cli-get-"));
      try {
        const result = await corral(["artifacts", "get", run.runId, "report.bin", "-o", join(dir, "report.bin")]);
        assert.equal(result.code, 1);
        assert.match(result.stderr, new RegExp(`does not match the artifact \\(sha256 ${digest}, ${2 * MiB} bytes; got ${sha256(damaged)}, ${2 * MiB} bytes\\); \\S+ was not written`));
        assert.deepEqual(await readdir(dir), [], "neither the file nor a temporary one");
        const toStdout = await corral(["artifacts", "get", run.runId, "report.bin"]);
        assert.equal(toStdout.code, 1, "stdout cannot be taken back, but the exit code tells");
      } finally {
        await writeFile(path, data);
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("get refuses an artifact still being uploaded unless --partial, and names what is missing", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const live = liveUpload(fx, run.runId, "attempts/1/run.log");
      live.append("half a log\n");
      await eventually(async () => (await fx.sql.one<{ committed_offset: string }>("select committed_offset from uploads where run_id = ?", [run.runId]))?.committed_offset === "11", "the commit");
      const refused = await corral(["artifacts", "get", run.runId, "attempts/1/run.log"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /attempts\/1\/run\.log is still being uploaded \(11 B so far\)/);
      const partial = await corral(["artifacts", "get", run.runId, "attempts/1/run.log", "--partial"]);
      assert.equal(partial.code, 0, partial.stderr);
      assert.equal(partial.stdout.toString(), "half a log\n");
      assert.match(partial.stderr, /unfinished: got the 11 bytes uploaded so far, with no digest to check/);
      await live.finish();

      const absent = await corral(["artifacts", "get", run.runId, "nope.txt"]);
      assert.equal(absent.code, 1);
      assert.match(absent.stderr, /has no artifact nope\.txt/);
      const noRun = await corral(["artifacts", "get", randomUUID(), "nope.txt"]);
      assert.match(noRun.stderr, /no run /);
      const hostile = await corral(["artifacts", "get", run.runId, "../etc/passwd"]);
      assert.equal(hostile.code, 1);
      assert.match(hostile.stderr, /the request was rejected:\n {2}name: /);
      for (const args of [["artifacts"], ["artifacts", "rm", run.runId], ["artifacts", "get", run.runId], ["artifacts", "ls"], ["artifacts", "get", run.runId, "x", "--progress", "--no-progress"]]) {
        assert.equal((await corral(args)).code, 2, args.join(" "));
      }
    });
  });
});
