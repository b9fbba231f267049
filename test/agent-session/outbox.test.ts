import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { LogStream, RunEventSchema, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { createOutbox, LOG_OUTPUT_DROPPED, logChunkBytes, type Outbox } from "../../agent/src/session/outbox.ts";

const progress = (message: string) => ({ case: "progress" as const, value: { message } });
const messageOf = (event: RunEvent) => (event.payload.case === "progress" ? event.payload.value.message : event.payload.case);
const takeAll = (outbox: Outbox) => {
  const taken: RunEvent[] = [];
  for (let event = outbox.takeNext(); event; event = outbox.takeNext()) taken.push(event);
  return taken;
};
const bytes = (text: string) => new TextEncoder().encode(text);

describe("agent outbox", () => {
  it("numbers events from 1 and hands them out in order, once per stream", () => {
    const outbox = createOutbox({ chunkBytes: 1024 });
    assert.equal(outbox.append(progress("a")), 1n);
    assert.equal(outbox.append(progress("b")), 2n);
    assert.equal(outbox.caughtUp, false);
    assert.deepEqual(takeAll(outbox).map((e) => [e.sequence, messageOf(e)]), [[1n, "a"], [2n, "b"]]);
    assert.equal(outbox.caughtUp, true);
    assert.equal(outbox.takeNext(), undefined);
    assert.ok(takeAll(outbox).length === 0, "taken events are not handed out twice on one stream");
    assert.equal(outbox.lastSequence, 2n);
  });

  it("refuses an event that cannot be encoded without taking a sequence", () => {
    const outbox = createOutbox({ chunkBytes: 1024 });
    assert.throws(() => outbox.append({ case: "progress", value: { message: "bad", percent: Number.NaN } }), /invalid uint32/);
    assert.equal(outbox.append(progress("good")), 1n, "no gap");
  });

  it("keeps events until acked, trims on ack, and ignores stale or excessive acks", () => {
    const outbox = createOutbox({ chunkBytes: 1024 });
    for (const m of ["a", "b", "c"]) outbox.append(progress(m));
    takeAll(outbox);
    const full = outbox.size.bytes;
    outbox.ack(2n);
    assert.deepEqual(outbox.size.events, 1);
    assert.ok(outbox.size.bytes < full && outbox.size.bytes > 0);
    outbox.ack(1n); // stale
    assert.equal(outbox.ackedSequence, 2n);
    outbox.ack(99n); // beyond what exists: trims what exists, no more
    assert.equal(outbox.ackedSequence, 3n);
    assert.deepEqual(outbox.size, { events: 0, bytes: 0 });
    assert.equal(outbox.drained, true);
  });

  it("replays from the control plane's resume point after a reconnect", () => {
    const outbox = createOutbox({ chunkBytes: 1024 });
    for (let i = 1; i <= 5; i++) outbox.append(progress(`e${i}`));
    takeAll(outbox);
    outbox.ack(1n);
    outbox.resume(3n); // the new stream's welcome: 3 is stored
    assert.deepEqual(takeAll(outbox).map((e) => messageOf(e)), ["e4", "e5"]);
    assert.equal(outbox.ackedSequence, 3n);
    assert.throws(() => outbox.resume(2n), /acknowledged events are gone/);
  });

  it("numbers on after the control plane's resume point when it holds more than this outbox numbered", () => {
    const outbox = createOutbox({ chunkBytes: 1024 });
    outbox.resume(7n); // first welcome of a restarted agent: 7 events of this attempt are stored
    assert.equal(outbox.append(progress("fresh")), 8n);
    const pending = createOutbox({ chunkBytes: 1024 });
    pending.append(progress("x"));
    pending.append(progress("y"));
    pending.resume(4n);
    const renumbered = takeAll(pending);
    assert.deepEqual(renumbered.map((e) => [e.sequence, messageOf(e)]), [[5n, "x"], [6n, "y"]]);
    assert.equal(pending.size.bytes, renumbered.reduce((sum, e) => sum + toBinary(RunEventSchema, e).byteLength, 0), "sizes stay exact");
  });

  it("splits log output into chunks of at most chunkBytes and coalesces output not yet sent", () => {
    const outbox = createOutbox({ chunkBytes: 8 });
    outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes("abc") });
    outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes("def") });
    outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes("ghijklmnopq") });
    outbox.appendLog({ step: "agent", stream: LogStream.STDERR, data: bytes("err") });
    const sent = takeAll(outbox);
    const chunks = sent.map((e) => (e.payload.case === "logChunk" ? new TextDecoder().decode(e.payload.value.data) : "?"));
    assert.deepEqual(chunks, ["abcdefgh", "ijklmnop", "q", "err"]);
    // Sent chunks are frozen: the control plane may already hold them under their sequence.
    outbox.appendLog({ step: "agent", stream: LogStream.STDERR, data: bytes("more") });
    const next = takeAll(outbox);
    assert.equal(next.length, 1);
    assert.equal(next[0]!.sequence, 5n);
    const frozen = sent[3]!.payload.case === "logChunk" ? new TextDecoder().decode(sent[3]!.payload.value.data) : "";
    assert.equal(frozen, "err");
  });

  it("sizes log chunks well below the event payload limit", () => {
    assert.equal(logChunkBytes(4096), 1024);
    assert.equal(logChunkBytes(256 * 1024), 64 * 1024);
    assert.equal(logChunkBytes(0), 64 * 1024, "an unset limit takes the control plane's default");
    assert.equal(logChunkBytes(256 * 1024, 8192), 2048, "a smaller message limit wins");
  });

  describe("bounds", () => {
    it("sheds log output when full, keeps every non-log event, and reports the loss once drained to half", () => {
      const outbox = createOutbox({ chunkBytes: 4, maxEvents: 4 });
      for (let i = 0; i < 4; i++) outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes(`${i}${i}${i}${i}`) });
      assert.equal(outbox.size.events, 4);
      outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes("lostlost") }); // 2 chunks, shed
      assert.equal(outbox.shedding, true);
      assert.equal(outbox.size.events, 4);
      outbox.append(progress("kept")); // non-log events are never shed
      assert.equal(outbox.size.events, 5);
      takeAll(outbox);
      outbox.ack(2n); // 3 left: above half of 4, still shedding
      outbox.appendLog({ step: "lint", stream: LogStream.STDERR, data: bytes("lost") });
      assert.equal(outbox.shedding, true);
      outbox.ack(3n); // 2 left: half, shedding ends with one warning
      assert.equal(outbox.shedding, false);
      const [warning] = takeAll(outbox);
      assert.equal(warning?.payload.case, "warning");
      assert.equal(warning.payload.case === "warning" && warning.payload.value.code, LOG_OUTPUT_DROPPED);
      assert.match(warning.payload.case === "warning" ? warning.payload.value.message : "", /^12 bytes of output of "agent", "lint" \(3 chunks\)/);
      outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes("back") });
      assert.equal(takeAll(outbox).length, 1, "log output flows again");
    });

    it("bounds by bytes too, and reportDropped flushes the notice on demand", () => {
      const outbox = createOutbox({ chunkBytes: 1000, maxBytes: 3000 });
      for (let i = 0; i < 5; i++) outbox.appendLog({ step: "s", stream: LogStream.STDOUT, data: new Uint8Array(1000) });
      assert.ok(outbox.size.bytes <= 3000, `holds ${outbox.size.bytes} bytes`);
      assert.equal(outbox.shedding, true);
      outbox.reportDropped();
      const last = takeAll(outbox).at(-1)!;
      assert.equal(last.payload.case === "warning" && last.payload.value.code, LOG_OUTPUT_DROPPED);
      outbox.reportDropped();
      assert.equal(outbox.takeNext(), undefined, "nothing more to report");
    });

    it("spills log output that does not fit in memory to its file, sends it in order, replays it, and sheds only when the file is full", async () => {
      const dir = await mkdtemp(join(tmpdir(), "outbox-spill-"));
      try {
        const spillFile = join(dir, "outbox.spill");
        const outbox = createOutbox({ chunkBytes: 4, maxEvents: 3, spillFile, maxSpillBytes: 400 });
        for (let i = 0; i < 10; i++) outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes(`${i}${i}${i}${i}`) });
        outbox.append(progress("kept"));
        assert.equal(outbox.shedding, false);
        assert.equal(outbox.size.events, 11);
        assert.equal(outbox.spilled.events, 7, "three in memory, seven on disk");
        assert.equal((await stat(spillFile)).mode & 0o777, 0o600);
        const dataOf = (e: RunEvent) => (e.payload.case === "logChunk" ? new TextDecoder().decode(e.payload.value.data) : messageOf(e));
        const expected = [...Array.from({ length: 10 }, (_, i) => `${i}`.repeat(4)), "kept"];
        const first = takeAll(outbox);
        assert.deepEqual(first.map(dataOf), expected);
        assert.deepEqual(first.map((e) => e.sequence), expected.map((_, i) => BigInt(i + 1)));
        outbox.ack(5n);
        outbox.resume(5n); // a new stream replays the rest from the file
        assert.deepEqual(takeAll(outbox).map(dataOf), expected.slice(5));
        outbox.ack(11n);
        assert.deepEqual(outbox.spilled, { events: 0, bytes: 0 });
        assert.equal((await stat(spillFile)).size, 0, "the file starts over once everything spilled is stored");
        // A full file sheds, and the loss is reported as before.
        for (let i = 0; i < 40; i++) outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes("xxxx") });
        assert.equal(outbox.shedding, true);
        assert.ok((await stat(spillFile)).size <= 400);
        outbox.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe("properties", () => {
    type Op =
      | { op: "append"; count: number }
      | { op: "log"; text: string }
      | { op: "send"; count: number }
      | { op: "deliver"; count: number }
      | { op: "ack"; fraction: number }
      | { op: "reconnect" };
    const ops = fc.array(
      fc.oneof(
        fc.record({ op: fc.constant("append" as const), count: fc.integer({ min: 1, max: 4 }) }),
        fc.record({ op: fc.constant("log" as const), text: fc.string({ minLength: 1, maxLength: 30 }) }),
        fc.record({ op: fc.constant("send" as const), count: fc.integer({ min: 1, max: 6 }) }),
        fc.record({ op: fc.constant("deliver" as const), count: fc.integer({ min: 1, max: 6 }) }),
        fc.record({ op: fc.constant("ack" as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
        fc.record({ op: fc.constant("reconnect" as const) }),
      ),
      { maxLength: 80 },
    );

    /**
     * A model of the control plane's side: events in flight on the current stream, stored
     * events (a replay at or below the stored point is dropped, a gap is refused), acks that
     * may lag behind what is stored, and streams that die with their in-flight events.
     */
    it("delivers every event exactly once, in order, whatever the ack points and reconnects", () => {
      fc.assert(
        fc.property(ops, (script) => {
          const outbox = createOutbox({ chunkBytes: 16, maxEvents: 1e6, maxBytes: 1e9 });
          const stored: RunEvent[] = [];
          let inFlight: RunEvent[] = [];
          let gaps = 0;
          let logText = "";
          let appended = 0;
          const deliver = (count: number) => {
            for (const event of inFlight.splice(0, count)) {
              const expected = BigInt(stored.length + 1);
              if (event.sequence === expected) stored.push(structuredClone(event));
              else if (event.sequence > expected) gaps += 1;
            }
          };
          for (const step of script) {
            switch (step.op) {
              case "append":
                for (let i = 0; i < step.count; i++) outbox.append(progress(`m${++appended}`));
                break;
              case "log":
                logText += step.text;
                outbox.appendLog({ step: "agent", stream: LogStream.STDOUT, data: bytes(step.text) });
                break;
              case "send":
                for (let i = 0; i < step.count; i++) {
                  const event = outbox.takeNext();
                  if (event) inFlight.push(event);
                }
                break;
              case "deliver":
                deliver(step.count);
                break;
              case "ack":
                outbox.ack(BigInt(Math.floor(stored.length * step.fraction)));
                break;
              case "reconnect":
                inFlight = [];
                outbox.resume(BigInt(stored.length));
                break;
            }
            // Invariants: the outbox holds exactly what is not acknowledged, and its byte count is exact.
            assert.equal(BigInt(outbox.size.events), outbox.lastSequence - outbox.ackedSequence);
            assert.ok(outbox.ackedSequence <= BigInt(stored.length));
          }
          // The end of the story: one last stream that carries everything.
          inFlight = [];
          outbox.resume(BigInt(stored.length));
          inFlight = takeAll(outbox);
          deliver(inFlight.length);
          outbox.ack(BigInt(stored.length));

          assert.equal(gaps, 0, "the outbox never sends a gap");
          assert.deepEqual(stored.map((e) => e.sequence), stored.map((_, i) => BigInt(i + 1)));
          assert.equal(BigInt(stored.length), outbox.lastSequence);
          assert.deepEqual(stored.filter((e) => e.payload.case === "progress").map(messageOf), Array.from({ length: appended }, (_, i) => `m${i + 1}`));
          const storedLog = stored.flatMap((e) => (e.payload.case === "logChunk" ? [e.payload.value.data] : []));
          assert.equal(new TextDecoder().decode(Buffer.concat(storedLog)), logText, "log output arrives whole: no chunk changed after it was sent");
          assert.ok(storedLog.every((data) => data.length <= 16));
          assert.deepEqual(outbox.size, { events: 0, bytes: 0 });
        }),
        { numRuns: 500 },
      );
    });

    it("counts the bytes it holds exactly", () => {
      fc.assert(
        fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 30 }), fc.nat(30), (texts, ackAt) => {
          const outbox = createOutbox({ chunkBytes: 10 });
          const events: RunEvent[] = [];
          for (const text of texts) {
            if (text.length % 2) outbox.append(progress(text));
            else outbox.appendLog({ step: "s", stream: LogStream.STDERR, data: bytes(text) });
          }
          for (let e = outbox.takeNext(); e; e = outbox.takeNext()) events.push(e);
          outbox.ack(BigInt(ackAt));
          const kept = events.filter((e) => e.sequence > outbox.ackedSequence);
          assert.equal(outbox.size.bytes, kept.reduce((sum, e) => sum + toBinary(RunEventSchema, e).byteLength, 0));
        }),
      );
    });
  });
});
