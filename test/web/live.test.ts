import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { RunService, RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { WebServer } from "@corral/web/start-web.ts";
import { followRun, type FollowState } from "../../services/web/ui/live/follow-run.ts";
import { tailLog, type TailState } from "../../services/web/ui/live/tail-log.ts";
import { createSeededRemote, useTempDirs } from "../agent/support/git-fixtures.ts";
import { ARTIFACT_SERVICE_TOKEN } from "../support/artifact-service.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { startWebFixture } from "../support/web.ts";

/**
 * The dashboard's live modules (framework-free, the same code the browser runs) against a real
 * stack, through the web service as a browser reaches it: the Connect protocol over HTTP/1.1.
 */
describe("dashboard live modules: following a run and its log", function () {
  this.timeout(90_000);
  let stack: StackFixture;
  let web: WebServer;
  let runs: ReturnType<typeof createClient<typeof RunService>>;
  let artifacts: ReturnType<typeof createClient<typeof ArtifactService>>;
  const tempDir = useTempDirs();

  before(async () => {
    stack = await startStackFixture({}, { agentEnv: { CORRAL_RUN_LOG_FLUSH_INTERVAL: "200ms" } });
    web = await startWebFixture({ schedulerUrl: stack.scheduler.server.url, artifactUrl: stack.artifacts!.url, token: ARTIFACT_SERVICE_TOKEN });
    const transport = createConnectTransport({ baseUrl: web.server.url, httpVersion: "1.1" });
    runs = createClient(RunService, transport);
    artifacts = createClient(ArtifactService, transport);
  });
  after(async () => {
    await web?.close(100);
    await stack?.close();
  });

  async function submit(commandTemplate: string) {
    const remote = await createSeededRemote(await tempDir("live"));
    return (await stack.client.submitRun({ spec: { repositoryUrl: remote.url, baseRef: "main", agent: { commandTemplate, prompt: "go" } } })).run!;
  }

  it("follows a run to its end in windows of a few events, each event once, in order; the log in small windows, whole", async () => {
    const run = await submit("for i in $(seq 1 12); do echo out $i; sleep 0.1; done; echo x >> README.md");
    const signal = new AbortController().signal;
    const sequences: bigint[] = [];
    const states: string[] = [];
    let last: RunStatus | undefined;
    const tailStates: TailState["state"][] = [];
    const chunks: Buffer[] = [];
    const [position, end] = await Promise.all([
      followRun(runs, {
        runId: run.id,
        signal,
        windowEvents: 3,
        onRun: (r) => (last = r.status),
        onEvent: (e) => {
          assert.equal(e.attempt, 1);
          sequences.push(e.event!.sequence);
        },
        onState: (s: FollowState) => states.push(s.state),
      }),
      // Started before the agent opens the log: it waits for it, then follows it to its finish.
      tailLog(artifacts, {
        runId: run.id,
        name: "attempts/1/run.log",
        signal,
        windowBytes: 64,
        pollMs: 100,
        onData: (data) => chunks.push(Buffer.from(data)),
        onState: (s) => tailStates.push(s.state),
      }),
    ]);
    assert.equal(last, RunStatus.COMPLETED);
    assert.deepEqual(sequences, sequences.map((_, i) => BigInt(i + 1)), "every event once, in order, across the reopened windows");
    const stored = await stack.sql.one<{ n: string }>("select count(*) as n from events where run_id = ?", [run.id]);
    assert.equal(sequences.length, Number(stored!.n));
    assert.deepEqual(position, { attempt: 1, sequence: BigInt(sequences.length) });
    assert.ok(states.filter((s) => s === "live").length > 3, "one watch per window");
    assert.equal(states.at(-1), "ended");

    assert.equal(tailStates[0], "waiting", "the tail waited for the log to exist");
    assert.equal(tailStates.at(-1), "finished");
    const whole: Buffer[] = [];
    for await (const m of stack.artifacts!.client.download({ runId: run.id, name: "attempts/1/run.log" }, stack.artifacts!.auth)) whole.push(Buffer.from(m.data));
    assert.ok(Buffer.concat(chunks).equals(Buffer.concat(whole)), "the tail got the log byte for byte");
    assert.equal(end, Buffer.concat(whole).length);
    assert.ok(chunks.length > 1);
  });

  it("resumes after a position without repeating what was seen", async () => {
    const run = await submit("echo once >> README.md");
    const seen: bigint[] = [];
    await followRun(runs, { runId: run.id, signal: new AbortController().signal, onRun: () => {}, onEvent: (e) => seen.push(e.event!.sequence) });
    const resumed: bigint[] = [];
    await followRun(runs, { runId: run.id, from: { attempt: 1, sequence: 5n }, signal: new AbortController().signal, onRun: () => {}, onEvent: (e) => resumed.push(e.event!.sequence) });
    assert.deepEqual(resumed, seen.slice(5));
  });

  it("gives up only where retrying cannot help: a run that does not exist", async () => {
    const error = await followRun(runs, { runId: "0b7d9a9e-0000-4000-8000-000000000000", signal: new AbortController().signal, onRun: () => {}, onEvent: () => {} }).then(
      () => assert.fail("followed a run that does not exist"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(error.code, Code.NotFound);
  });

  it("stops when its signal ends it, with the position reached", async () => {
    const run = await submit("sleep 30");
    const stop = new AbortController();
    const following = followRun(runs, { runId: run.id, signal: stop.signal, onRun: () => {}, onEvent: () => {} });
    const tailing = tailLog(artifacts, { runId: run.id, name: "attempts/1/run.log", signal: stop.signal, onData: () => {} });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    stop.abort();
    const [position] = await Promise.all([following, tailing]);
    assert.equal(typeof position.sequence, "bigint");
    await stack.client.cancelRun({ runId: run.id });
  });
});
