import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Phase, RunEventSchema, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { createEventColumns } from "@corral/control-plane/attach/event-columns.ts";

const event = (sequence: number, payload: NonNullable<Parameters<typeof create<typeof RunEventSchema>>[1]>["payload"]): RunEvent =>
  create(RunEventSchema, { sequence: BigInt(sequence), time: timestampFromMs(1_800_000_000_000 + sequence), payload });
const add = (batch: ReturnType<typeof createEventColumns>, e: RunEvent) => batch.add(e, toBinary(RunEventSchema, e));

describe("control plane: a batch's event columns", () => {
  it("counts its events and knows its first and last sequence", () => {
    const batch = createEventColumns();
    assert.equal(batch.count, 0);
    for (let i = 41; i <= 45; i++) add(batch, event(i, { case: "progress", value: { message: "m" } }));
    assert.equal(batch.count, 5);
    assert.equal(batch.first, 41n);
    assert.equal(batch.last, 45n);
  });

  it("carries the run's phase and current step after its events", () => {
    const batch = createEventColumns();
    add(batch, event(1, { case: "phaseChanged", value: { phase: Phase.CLONING } }));
    assert.deepEqual(batch.progress, { phase: "cloning" });
    add(batch, event(2, { case: "stepStarted", value: { name: "clone" } }));
    add(batch, event(3, { case: "phaseChanged", value: { phase: Phase.AGENT } }));
    assert.deepEqual(batch.progress, { phase: "agent", currentStep: "clone" });
    add(batch, event(4, { case: "stepFinished", value: { name: "clone" } }));
    assert.deepEqual(batch.progress, { phase: "agent", currentStep: null }, "no step runs after a step finished");
    const quiet = createEventColumns();
    add(quiet, event(5, { case: "progress", value: { message: "m" } }));
    assert.deepEqual(quiet.progress, {}, "unchanged");
  });

  it("is full at its event limit or its payload byte limit", () => {
    const byCount = createEventColumns({ events: 3 });
    for (let i = 1; i <= 2; i++) add(byCount, event(i, { case: "progress", value: { message: "m" } }));
    assert.equal(byCount.full, false);
    add(byCount, event(3, { case: "progress", value: { message: "m" } }));
    assert.equal(byCount.full, true);
    const byBytes = createEventColumns({ bytes: 1000 });
    add(byBytes, event(1, { case: "logChunk", value: { step: "agent", data: new Uint8Array(600) } }));
    assert.equal(byBytes.full, false);
    add(byBytes, event(2, { case: "logChunk", value: { step: "agent", data: new Uint8Array(600) } }));
    assert.equal(byBytes.full, true);
  });

  it("refuses an event without payload or time: the session must have refused it first", () => {
    const batch = createEventColumns();
    const bare = create(RunEventSchema, { sequence: 1n });
    assert.throws(() => batch.add(bare, toBinary(RunEventSchema, bare)), /event 1 has no payload or time/);
    assert.equal(batch.count, 0);
  });
});
