import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { CompletionOutcome, ProtocolErrorCode } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { CompletionStatus } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { fromBinary } from "@bufbuild/protobuf";
import { Phase, RunEventSchema } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { CompletionConflictReason, FieldViolationsSchema, LeaseSupersededSchema, LimitExceededSchema, ProtocolVersionMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { openAttach } from "../support/attach-client.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";

const pick = ({ currentEpoch, sameAgent }: { currentEpoch: bigint; sameAgent: boolean }) => ({ currentEpoch, sameAgent });
const progress = (message: string) => ({ case: "progress" as const, value: { message } });

/** The message of a stored run.progress event. */
function progressMessage(stored: Uint8Array): string | undefined {
  const event = fromBinary(RunEventSchema, stored);
  return event.payload.case === "progress" ? event.payload.value.message : undefined;
}

/** A seeded run whose agent stream has said hello and been welcomed. */
async function attached(fixture: ControlPlaneFixture) {
  const run = await seedLaunchedRun(fixture.sql);
  const stream = openAttach(fixture.url);
  stream.hello(run.runId, 1, run.token);
  await stream.next("welcome");
  return { run, stream };
}

describe("control plane: Attach", () => {
  let fx: ControlPlaneFixture;
  before(async () => {
    fx = await startControlPlaneFixture({ CORRAL_MAX_EVENT_PAYLOAD_BYTES: "4096", CORRAL_HEARTBEAT_INTERVAL: "200ms" });
  });
  after(() => fx.close());

  const storedSequences = async (runId: string) =>
    (await fx.sql.all<{ sequence: string }>("select sequence from events where run_id = ? order by sequence", [runId])).map((r) => Number(r.sequence));

  it("welcomes a valid hello with the assignment and takes the lease", async () => {
    const run = await seedLaunchedRun(fx.sql, { spec: { repositoryUrl: "file:///tmp/x.git", baseRef: "v1.2" } });
    const stream = openAttach(fx.url);
    stream.hello(run.runId, 1, run.token);
    const welcome = await stream.next("welcome");
    assert.equal(welcome.protocolVersion, 1);
    assert.equal(welcome.ackedSequence, 0n);
    assert.equal(welcome.leaseEpoch, 1n);
    assert.equal(welcome.assignment?.runId, run.runId);
    assert.equal(welcome.assignment?.spec?.baseRef, "v1.2");
    assert.equal(welcome.assignment?.artifactServiceUrl, fx.artifacts?.url, "the artifact service the control plane was configured with");
    assert.equal(welcome.assignment?.limits?.maxEventPayloadBytes, 4096);
    assert.equal(welcome.assignment?.gitCredentials, undefined, "no git credentials are configured");
    const status = await fx.sql.one<{ status: string }>("select status from runs where id = ?", [run.runId]);
    assert.equal(status?.status, "running");
    stream.abort();
  });

  it("stores events in order, acks the highest stored, drops replays, and tracks phase and step", async () => {
    const { run, stream } = await attached(fx);
    stream.event(1n, { case: "phaseChanged", value: { phase: Phase.AGENT } });
    stream.event(2n, { case: "stepStarted", value: { name: "agent" } });
    for (let i = 3n; i <= 50n; i++) stream.event(i, progress(`p${i}`));
    await stream.acked(50n);
    stream.event(10n, progress("replayed")); // a replay after a reconnect
    stream.event(50n, progress("replayed"));
    stream.event(51n, progress("new"));
    await stream.acked(51n);
    assert.deepEqual(await storedSequences(run.runId), Array.from({ length: 51 }, (_, i) => i + 1));
    const row = await fx.sql.one<{ phase: string; current_step: string; payload: Uint8Array }>(
      "select r.phase, r.current_step, e.payload from runs r join events e on e.run_id = r.id where r.id = ? and e.sequence = 10",
      [run.runId],
    );
    assert.equal(row?.phase, "agent");
    assert.equal(row?.current_step, "agent");
    assert.equal(progressMessage(row!.payload), "p10", "a replay must not overwrite the stored event");
    stream.abort();
  });

  it("refuses a gap and an event without payload without closing the stream", async () => {
    const { run, stream } = await attached(fx);
    stream.event(1n, progress("one"));
    stream.event(3n, progress("gap"));
    const gap = await stream.next("error");
    assert.equal(gap.code, ProtocolErrorCode.OUT_OF_ORDER);
    assert.equal(gap.sequence, 3n);
    const mark = stream.received.length;
    stream.send({ case: "event", value: { sequence: 2n } });
    const malformed = await stream.next("error", mark);
    assert.equal(malformed.code, ProtocolErrorCode.MALFORMED_EVENT);
    stream.event(2n, progress("two"));
    await stream.acked(2n);
    assert.deepEqual(await storedSequences(run.runId), [1, 2]);
    stream.abort();
  });

  it("stores a burst of more events than one write takes, in several writes, each acked after it is stored", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const stream = openAttach(fx.url);
    stream.hello(run.runId, 1, run.token, { protocolMax: 2 });
    await stream.next("welcome");
    for (let first = 1; first <= 12_000; first += 500) {
      stream.send({
        case: "eventBatch",
        value: { events: Array.from({ length: 500 }, (_, i) => ({ sequence: BigInt(first + i), time: { seconds: 1n, nanos: 0 }, payload: progress(`${first + i}`) })) },
      });
    }
    await stream.acked(12_000n, 30_000);
    const acks = stream.received.flatMap((r) => (r.message.case === "ack" ? [r.message.value.sequence] : []));
    assert.ok(acks.length >= 3, `12,000 events take at least three writes of at most 5,000 (acks: ${acks.join(", ")})`);
    assert.deepEqual([...acks].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), acks, "acks only grow");
    const stored = await fx.sql.one<{ n: string; max: string; distinct: string }>(
      "select count(*) as n, max(sequence) as max, count(distinct sequence) as distinct from events where run_id = ?",
      [run.runId],
    );
    assert.deepEqual(stored, { n: "12000", max: "12000", distinct: "12000" });
    stream.abort();
  });

  it("refuses an event whose time is outside the Timestamp range without closing the stream", async () => {
    const { run, stream } = await attached(fx);
    stream.send({ case: "event", value: { sequence: 1n, time: { seconds: 253_402_300_800n, nanos: 0 }, payload: progress("year 10000") } });
    const late = await stream.next("error");
    assert.equal(late.code, ProtocolErrorCode.MALFORMED_EVENT);
    assert.equal(late.sequence, 1n);
    assert.match(late.message, /time outside 0001-01-01 to 9999-12-31/);
    const mark = stream.received.length;
    stream.send({ case: "event", value: { sequence: 1n, time: { seconds: 1n, nanos: -1 }, payload: progress("negative nanos") } });
    assert.equal((await stream.next("error", mark)).code, ProtocolErrorCode.MALFORMED_EVENT);
    stream.send({ case: "event", value: { sequence: 1n, time: { seconds: -62_135_596_800n, nanos: 0 }, payload: progress("year 1") } });
    await stream.acked(1n);
    const row = await fx.sql.one<{ occurred_at: string }>("select occurred_at::text from events where run_id = ?", [run.runId]);
    assert.match(row!.occurred_at, /^0001-01-01 00:00:00/);
    stream.abort();
  });

  it("resumes after a reconnect and fences the superseded stream off with ABORTED", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const first = openAttach(fx.url);
    first.hello(run.runId, 1, run.token);
    await first.next("welcome");
    for (let i = 1n; i <= 5n; i++) first.event(i, progress(`${i}`));
    await first.acked(5n);

    const second = openAttach(fx.url);
    second.hello(run.runId, 1, run.token);
    const welcome = await second.next("welcome");
    assert.equal(welcome.ackedSequence, 5n, "the new stream resumes after what is stored");
    assert.equal(welcome.leaseEpoch, 2n);

    const error = await first.ended();
    assert.equal(error?.code, Code.Aborted);
    assert.equal(error?.findDetails(LeaseSupersededSchema)[0]?.currentEpoch, 2n);
    first.event(6n, progress("stale")); // refused: the stream is closed
    second.event(6n, progress("fresh"));
    await second.acked(6n);
    const six = await fx.sql.one<{ payload: Uint8Array }>("select payload from events where run_id = ? and sequence = 6", [run.runId]);
    assert.equal(progressMessage(six!.payload), "fresh");
    second.abort();
  });

  it("says whether the stream that took over came from the same agent (its instance id), whichever way the takeover is noticed", async () => {
    const takeover = async (firstId: string, secondId: string) => {
      const run = await seedLaunchedRun(fx.sql);
      const first = openAttach(fx.url);
      first.hello(run.runId, 1, run.token, { instanceId: firstId });
      await first.next("welcome");
      const second = openAttach(fx.url);
      second.hello(run.runId, 1, run.token, { instanceId: secondId });
      await second.next("welcome");
      const error = await first.ended();
      second.abort();
      assert.equal(error?.code, Code.Aborted);
      return error!.findDetails(LeaseSupersededSchema)[0]!;
    };
    assert.deepEqual(pick(await takeover("agent-a", "agent-a")), { currentEpoch: 2n, sameAgent: true });
    assert.deepEqual(pick(await takeover("agent-a", "agent-b")), { currentEpoch: 2n, sameAgent: false });
    assert.deepEqual(pick(await takeover("", "")), { currentEpoch: 2n, sameAgent: false }, "no instance id: always another agent");

    // Fenced at the write (the epoch moved under the stream before any notification reached it).
    const run = await seedLaunchedRun(fx.sql);
    const first = openAttach(fx.url);
    first.hello(run.runId, 1, run.token, { instanceId: "agent-c" });
    await first.next("welcome");
    await fx.sql.run("update attempts set lease_epoch = lease_epoch + 1, lease_holder = 'agent-c' where run_id = ?", [run.runId]);
    first.event(1n, progress("fenced"));
    const error = await first.ended();
    assert.equal(error?.code, Code.Aborted);
    assert.deepEqual(pick(error!.findDetails(LeaseSupersededSchema)[0]!), { currentEpoch: 2n, sameAgent: true });
    assert.equal((await storedSequences(run.runId)).length, 0, "the fenced write stored nothing");
  });

  it("refuses a malformed instance id with INVALID_ARGUMENT naming hello.instance_id, and takes no lease", async () => {
    for (const instanceId of ["a b", "x".repeat(65), "ü", "a\u0000"]) {
      const run = await seedLaunchedRun(fx.sql);
      const stream = openAttach(fx.url);
      stream.hello(run.runId, 1, run.token, { instanceId });
      const error = await stream.ended();
      assert.equal(error?.code, Code.InvalidArgument, JSON.stringify(instanceId));
      assert.deepEqual(error?.findDetails(FieldViolationsSchema)[0]?.violations.map((v) => v.field), ["hello.instance_id"]);
      const lease = await fx.sql.one<{ lease_epoch: string }>("select lease_epoch from attempts where run_id = ?", [run.runId]);
      assert.equal(lease?.lease_epoch, "0");
    }
  });

  it("takes event batches on protocol 2, and refuses them on protocol 1", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const v2 = openAttach(fx.url);
    v2.hello(run.runId, 1, run.token, { protocolMin: 1, protocolMax: 2 });
    assert.equal((await v2.next("welcome")).protocolVersion, 2, "the newest shared version wins");
    const batch = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => ({ sequence: BigInt(from + i), time: { seconds: 1n, nanos: 0 }, payload: progress(`b${from + i}`) }));
    v2.send({ case: "eventBatch", value: { events: batch(1, 30) } });
    v2.send({ case: "eventBatch", value: { events: batch(20, 40) } }); // overlaps: replays are dropped
    await v2.acked(40n);
    assert.deepEqual(await storedSequences(run.runId), Array.from({ length: 40 }, (_, i) => i + 1));
    v2.abort();

    const other = await seedLaunchedRun(fx.sql);
    const v1 = openAttach(fx.url);
    v1.hello(other.runId, 1, other.token);
    assert.equal((await v1.next("welcome")).protocolVersion, 1);
    v1.send({ case: "eventBatch", value: { events: batch(1, 2) } });
    assert.equal((await v1.next("error")).code, ProtocolErrorCode.UNEXPECTED_MESSAGE);
    assert.deepEqual(await storedSequences(other.runId), []);
    v1.abort();
  });

  it("stores batched events as sent, and drops what a reconnected agent replays in its batches", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const sent = (from: number, to: number, text: string) =>
      Array.from({ length: to - from + 1 }, (_, i) => ({ sequence: BigInt(from + i), time: { seconds: 1_800_000_000n, nanos: (from + i) * 1_000_000 }, payload: progress(`${text}${from + i}`) }));
    const first = openAttach(fx.url);
    first.hello(run.runId, 1, run.token, { protocolMax: 2 });
    await first.next("welcome");
    first.send({ case: "eventBatch", value: { events: [{ sequence: 1n, time: { seconds: 1n, nanos: 0 }, payload: { case: "phaseChanged", value: { phase: Phase.VALIDATING } } }] } });
    first.send({ case: "eventBatch", value: { events: sent(2, 700, "first") } });
    await first.acked(700n);
    first.abort();

    const second = openAttach(fx.url);
    second.hello(run.runId, 1, run.token, { protocolMax: 2 });
    assert.equal((await second.next("welcome")).ackedSequence, 700n);
    // The outbox replays from its own trim point, which may lag the server's: 650..700 again.
    second.send({ case: "eventBatch", value: { events: [...sent(650, 700, "replayed"), ...sent(701, 900, "second")] } });
    await second.acked(900n);
    const rows = await fx.sql.all<{ sequence: string; type: string; occurred_at: Date; payload: Uint8Array }>(
      "select sequence, type, occurred_at, payload from events where run_id = ? order by sequence",
      [run.runId],
    );
    assert.deepEqual(rows.map((r) => Number(r.sequence)), Array.from({ length: 900 }, (_, i) => i + 1));
    assert.equal(progressMessage(rows[679]!.payload), "first680", "a replayed event does not replace the stored one");
    assert.equal(progressMessage(rows[799]!.payload), "second800");
    assert.equal(rows[799]!.type, "run.progress");
    assert.equal(new Date(rows[799]!.occurred_at).toISOString(), new Date(1_800_000_000_000 + 800).toISOString());
    const phase = fromBinary(RunEventSchema, rows[0]!.payload);
    assert.equal(phase.payload.case === "phaseChanged" && phase.payload.value.phase, Phase.VALIDATING);
    assert.equal((await fx.sql.one<{ phase: string }>("select phase from runs where id = ?", [run.runId]))?.phase, "validating");
    second.abort();
  });

  it("ends a stream whose heartbeat carries a stale lease epoch", async () => {
    const { run, stream } = await attached(fx);
    stream.send({ case: "heartbeat", value: { leaseEpoch: 99n } });
    assert.equal((await stream.ended())?.code, Code.Aborted);
  });

  it("sends heartbeats at the configured interval", async () => {
    const { run, stream } = await attached(fx);
    const heartbeat = await stream.next("heartbeat", 0, 3000);
    assert.equal(heartbeat.leaseEpoch, 1n);
    stream.abort();
  });

  describe("authentication", () => {
    const expectUnauthenticated = async (hello: (s: ReturnType<typeof openAttach>) => void) => {
      const stream = openAttach(fx.url);
      hello(stream);
      const error = await stream.ended();
      assert.equal(error?.code, Code.Unauthenticated);
      assert.equal(error?.rawMessage, "invalid or expired credential");
      return error!;
    };

    it("refuses a wrong credential, another run's, an expired and a revoked one, all alike", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const other = await seedLaunchedRun(fx.sql);
      const expired = await seedLaunchedRun(fx.sql, { expiresInMs: -1000 });
      const revoked = await seedLaunchedRun(fx.sql);
      await fx.sql.run("update credentials set revoked_at = now() where run_id = ?", [revoked.runId]);
      const wrong = run.token.slice(0, -4) + (run.token.endsWith("AAAA") ? "BBBB" : "AAAA");
      const errors = [
        await expectUnauthenticated((s) => s.hello(run.runId, 1, wrong)),
        await expectUnauthenticated((s) => s.hello(run.runId, 1, other.token)),
        await expectUnauthenticated((s) => s.hello(expired.runId, 1, expired.token)),
        await expectUnauthenticated((s) => s.hello(revoked.runId, 1, revoked.token)),
        await expectUnauthenticated((s) => s.hello(run.runId, 2, run.token)),
        await expectUnauthenticated((s) => s.hello("not-a-uuid", 1, run.token)),
        await expectUnauthenticated((s) => s.hello(run.runId, 1, "")),
      ];
      for (const error of errors) {
        assert.ok(!error.message.includes(run.runId) && !error.message.includes(other.runId), "errors reveal no run ids");
      }
    });

    it("requires hello first", async () => {
      const stream = openAttach(fx.url);
      stream.event(1n, progress("too early"));
      assert.equal((await stream.ended())?.code, Code.FailedPrecondition);
    });
  });

  it("refuses protocol versions it does not speak, naming its range", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const stream = openAttach(fx.url);
    stream.hello(run.runId, 1, run.token, { protocolMin: 3, protocolMax: 5 });
    const error = await stream.ended();
    assert.equal(error?.code, Code.FailedPrecondition);
    assert.match(error!.rawMessage, /supports 1\.\.2/);
    const [mismatch] = error!.findDetails(ProtocolVersionMismatchSchema);
    assert.deepEqual([mismatch?.supportedMin, mismatch?.supportedMax, mismatch?.offeredMin, mismatch?.offeredMax], [1, 2, 3, 5]);
  });

  describe("limits", () => {
    it("ends the stream with RESOURCE_EXHAUSTED for an oversized event", async () => {
      const { run, stream } = await attached(fx);
      stream.event(1n, { case: "logChunk", value: { step: "agent", data: new Uint8Array(5000) } });
      const error = await stream.ended();
      assert.equal(error?.code, Code.ResourceExhausted);
      const [limit] = error!.findDetails(LimitExceededSchema);
      assert.equal(limit?.limit, "event_payload_bytes");
      assert.equal(limit?.maximum, 4096n);
      assert.deepEqual(await storedSequences(run.runId), []);
    });

    it("ends the stream with RESOURCE_EXHAUSTED past the event rate, with a retry delay", async () => {
      const limited = await startControlPlaneFixture({ CORRAL_MAX_EVENTS_PER_SECOND: "10", CORRAL_MAX_EVENTS_BURST: "20" });
      try {
        const { run, stream } = await attached(limited);
        for (let i = 1n; i <= 40n; i++) stream.event(i, progress(`${i}`));
        const error = await stream.ended();
        assert.equal(error?.code, Code.ResourceExhausted);
        const [limit] = error!.findDetails(LimitExceededSchema);
        assert.equal(limit?.limit, "events_per_second");
        assert.ok(limit?.retryAfter, "a retry delay is given");
      } finally {
        await limited.close();
      }
    });

    it("refuses a message over the size limit with RESOURCE_EXHAUSTED", async () => {
      const small = await startControlPlaneFixture({ CORRAL_MAX_MESSAGE_BYTES: "2048" });
      try {
        const { run, stream } = await attached(small);
        stream.event(1n, { case: "logChunk", value: { step: "agent", data: new Uint8Array(3000) } });
        assert.equal((await stream.ended())?.code, Code.ResourceExhausted);
      } finally {
        await small.close();
      }
    });
  });

  describe("completion", () => {
    const complete = (key: string, status: CompletionStatus = CompletionStatus.SUCCEEDED) =>
      ({ case: "complete" as const, value: { idempotencyKey: key, status, result: { commitSha: "a".repeat(40), branch: "corral/x", changedFiles: ["a.txt"] }, lastSequence: 1n } });

    it("is idempotent by key, refuses another key, and stores events sent before it first", async () => {
      const { run, stream } = await attached(fx);
      stream.event(1n, progress("last words"));
      stream.send(complete("key-1"));
      const first = await stream.next("completionAck");
      assert.equal(first.outcome, CompletionOutcome.RECORDED);
      assert.deepEqual(await storedSequences(run.runId), [1], "events before the completion are stored first");
      let mark = stream.received.length;
      stream.send(complete("key-1"));
      assert.equal((await stream.next("completionAck", mark)).outcome, CompletionOutcome.RECORDED, "same key, same answer");
      mark = stream.received.length;
      stream.send(complete("key-2", CompletionStatus.FAILED));
      const refused = await stream.next("completionAck", mark);
      assert.equal(refused.outcome, CompletionOutcome.CONFLICT);
      assert.equal(refused.conflictReason, CompletionConflictReason.DIFFERENT_KEY);
      mark = stream.received.length;
      stream.send(complete("key-2", CompletionStatus.FAILED));
      assert.equal((await stream.next("completionAck", mark)).outcome, CompletionOutcome.CONFLICT, "a refused key keeps its answer");
      const rows = await fx.sql.all<{ idempotency_key: string; conflict: boolean; status: string }>(
        "select idempotency_key, conflict, status from completions where run_id = ? order by received_at",
        [run.runId],
      );
      assert.deepEqual(rows.map((r) => [r.idempotency_key, r.conflict, r.status]), [["key-1", false, "succeeded"], ["key-2", true, "failed"]]);
      stream.close();
      assert.equal(await stream.ended(), null, "the agent closing its side ends the stream cleanly");
    });

    it("records a completion after the run is terminal as a conflict and does not reopen the run", async () => {
      const { run, stream } = await attached(fx);
      await fx.sql.run("update runs set status = 'cancelled', finished_at = now() where id = ?", [run.runId]);
      stream.send(complete("late"));
      const late = await stream.next("completionAck");
      assert.equal(late.outcome, CompletionOutcome.CONFLICT);
      assert.equal(late.conflictReason, CompletionConflictReason.RUN_TERMINAL);
      const row = await fx.sql.one<{ status: string; conflict_reason: string }>(
        "select r.status, c.conflict_reason from runs r join completions c on c.run_id = r.id where r.id = ?",
        [run.runId],
      );
      assert.deepEqual([row?.status, row?.conflict_reason], ["cancelled", "run_terminal"]);
      stream.abort();
    });

    it("names the bad fields of a malformed completion", async () => {
      const { run, stream } = await attached(fx);
      stream.send({ case: "complete", value: { idempotencyKey: "" } });
      const error = await stream.ended();
      assert.equal(error?.code, Code.InvalidArgument);
      assert.match(error!.rawMessage, /complete\.status/);
      assert.match(error!.rawMessage, /complete\.idempotency_key/);
    });
  });

  describe("cancellation", () => {
    it("pushes a cancel notified through PostgreSQL down the open stream", async () => {
      const { run, stream } = await attached(fx);
      await fx.sql.run("select pg_notify('corral_cancel', ?)", [JSON.stringify({ runId: run.runId, reason: "user asked", graceMs: 1500 })]);
      const cancel = await stream.next("cancel");
      assert.equal(cancel.reason, "user asked");
      assert.equal(Number(cancel.grace?.seconds) * 1000 + (cancel.grace?.nanos ?? 0) / 1e6, 1500);
      stream.abort();
    });

    it("sends a cancel requested before the agent attached right after the welcome", async () => {
      const run = await seedLaunchedRun(fx.sql);
      await fx.sql.run("update runs set cancel_requested_at = now(), cancel_reason = 'too late', status = 'cancelling' where id = ?", [run.runId]);
      const stream = openAttach(fx.url);
      stream.hello(run.runId, 1, run.token);
      await stream.next("welcome");
      assert.equal((await stream.next("cancel")).reason, "too late");
      stream.abort();
    });
  });
});
