import assert from "node:assert/strict";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { LogStream, Phase, RunEventSchema, StepKind } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { EventBatchSchema } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { encodeEvents } from "@corral/control-plane/attach/encode-events.ts";

const payload = fc.oneof(
  fc.record({ case: fc.constant("progress" as const), value: fc.record({ message: fc.string({ unit: "grapheme" }), percent: fc.option(fc.nat(100), { nil: undefined }) }) }),
  fc.record({ case: fc.constant("logChunk" as const), value: fc.record({ step: fc.string(), stream: fc.constantFrom(LogStream.STDOUT, LogStream.STDERR), data: fc.uint8Array({ maxLength: 300 }) }) }),
  fc.record({ case: fc.constant("phaseChanged" as const), value: fc.record({ phase: fc.constantFrom(Phase.CLONING, Phase.AGENT, Phase.PUSHING) }) }),
  fc.record({ case: fc.constant("stepStarted" as const), value: fc.record({ name: fc.string(), kind: fc.constantFrom(StepKind.AGENT, StepKind.VALIDATION) }) }),
  fc.constant({ case: undefined }),
);
const event = fc.record({
  sequence: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  time: fc.option(fc.record({ seconds: fc.bigInt({ min: -62135596800n, max: 253402300799n }), nanos: fc.integer({ min: 0, max: 999_999_999 }) }), { nil: undefined }),
  payload,
});

describe("control plane: encoding a batch's events", () => {
  it("gives each event exactly the bytes toBinary gives it alone", () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 40 }), (inits) => {
        const batch = create(EventBatchSchema, { events: inits.map((init) => create(RunEventSchema, init as never)) });
        const encoded = encodeEvents(batch);
        assert.equal(encoded.length, batch.events.length);
        encoded.forEach((bytes, i) => assert.deepEqual(bytes, toBinary(RunEventSchema, batch.events[i]!)));
      }),
      { numRuns: 200 },
    );
  });

  it("keeps an event's unknown fields, as toBinary does, and skips the batch's own", () => {
    // An event from a newer agent carrying a field this contract does not know (field 99).
    const known = toBinary(RunEventSchema, create(RunEventSchema, { sequence: 7n, payload: { case: "progress", value: { message: "hi" } } }));
    const newer = new BinaryWriter().raw(known).tag(99, WireType.LengthDelimited).string("from the future").finish();
    const withUnknown = fromBinary(RunEventSchema, newer);
    const batchBytes = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(newer).tag(42, WireType.Varint).uint32(5).finish();
    const batch = fromBinary(EventBatchSchema, batchBytes);
    const [encoded] = encodeEvents(batch);
    assert.deepEqual(encoded, toBinary(RunEventSchema, withUnknown));
    assert.deepEqual(encoded, newer, "the unknown field survives");
    assert.equal(encodeEvents(batch).length, 1);
  });

  it("encodes an empty batch as no events", () => {
    assert.deepEqual(encodeEvents(create(EventBatchSchema)), []);
  });
});
