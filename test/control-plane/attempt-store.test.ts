import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Phase, RunEventSchema, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { createPgPool, type PgPool } from "@corral/plumbing/db/pg-pool.ts";
import { createAttemptStore, LeaseLostError, type AttemptRecord, type AttemptStore } from "@corral/control-plane/attach/attempt-store.ts";
import { createEventColumns } from "@corral/control-plane/attach/event-columns.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";

const LEASE_MS = 30_000;

/** A batch of run.progress events from..to, as the session builds it, and the events in it. */
function events(from: number, to: number, text = "e") {
  const batch = createEventColumns();
  const sent: RunEvent[] = [];
  for (let i = from; i <= to; i++) {
    const event = create(RunEventSchema, {
      sequence: BigInt(i),
      time: timestampFromMs(Date.UTC(2026, 10, 29, 12, 0, 0, i)),
      payload: { case: "progress", value: { message: `${text}${i}` } },
    });
    batch.add(event, toBinary(RunEventSchema, event));
    sent.push(event);
  }
  return Object.assign(batch, { sent });
}

/** The attempt store on its own: the write path's fencing and atomicity, below any stream. */
describe("control plane: attempt store", () => {
  let fx: ControlPlaneFixture;
  let pool: PgPool;
  let store: AttemptStore;
  before(async () => {
    fx = await startControlPlaneFixture();
    pool = createPgPool(fx.database.url, 2);
    store = createAttemptStore(fx.controlPlane.database.orm, pool);
  });
  after(async () => {
    await pool.end();
    await fx.close();
  });

  const leased = async (): Promise<{ record: AttemptRecord; epoch: bigint }> => {
    const run = await seedLaunchedRun(fx.sql);
    const record = (await store.find(run.runId, 1))!;
    return { record, epoch: (await store.takeLease(record, LEASE_MS, "")).epoch };
  };
  const stored = async (runId: string) =>
    fx.sql.all<{ sequence: string; type: string; occurred_at: Date; payload: Uint8Array }>(
      "select sequence, type, occurred_at, payload from events where run_id = ? order by sequence",
      [runId],
    );

  it("stores a batch column for column: sequence, type, time to the millisecond and the event's bytes", async () => {
    const { record, epoch } = await leased();
    const batch = events(1, 300);
    await store.storeEvents(record, epoch, LEASE_MS, batch);
    const rows = await stored(record.runId);
    assert.equal(rows.length, 300);
    rows.forEach((row, i) => {
      assert.equal(row.sequence, String(i + 1));
      assert.equal(row.type, "run.progress");
      assert.equal(new Date(row.occurred_at).toISOString(), new Date(Date.UTC(2026, 10, 29, 12, 0, 0, i + 1)).toISOString());
      assert.deepEqual(new Uint8Array(row.payload), toBinary(RunEventSchema, batch.sent[i]!));
    });
    // PostgreSQL 17 reads the version of a UUIDv7 but not yet its time: the first 48 bits.
    const ids = await fx.sql.all<{ version: number; ms: string }>(
      "select uuid_extract_version(id) as version, ('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint as ms from events where run_id = ?",
      [record.runId],
    );
    assert.deepEqual([...new Set(ids.map((r) => r.version))], [7], "time-ordered ids");
    assert.ok(ids.every((r) => Math.abs(Number(r.ms) - Date.now()) < 60_000), "stamped with the time of the write");
    const last = fromBinary(RunEventSchema, rows[299]!.payload);
    assert.equal(last.payload.case === "progress" && last.payload.value.message, "e300");
  });

  it("refuses the write of a superseded epoch and stores none of its batch", async () => {
    const { record, epoch: old } = await leased();
    await store.storeEvents(record, old, LEASE_MS, events(1, 5));
    const { epoch: current } = await store.takeLease(record, LEASE_MS, "");
    assert.equal(current, old + 1n);
    const stale = events(6, 5000, "stale");
    const phase = create(RunEventSchema, { sequence: 5001n, time: timestampFromMs(0), payload: { case: "phaseChanged", value: { phase: Phase.AGENT } } });
    stale.add(phase, toBinary(RunEventSchema, phase));
    await assert.rejects(store.storeEvents(record, old, LEASE_MS, stale), LeaseLostError);
    assert.equal((await stored(record.runId)).length, 5, "nothing of the stale batch is stored");
    const run = await fx.sql.one<{ phase: string | null }>("select phase from runs where id = ?", [record.runId]);
    assert.notEqual(run?.phase, "agent", "nor its progress");
    await store.storeEvents(record, current, LEASE_MS, events(6, 10, "fresh"));
    assert.equal((await stored(record.runId)).length, 10);
  });

  it("fails a batch holding an already stored sequence as a whole (the unique key is the backstop)", async () => {
    const { record, epoch } = await leased();
    await store.storeEvents(record, epoch, LEASE_MS, events(1, 10));
    await assert.rejects(store.storeEvents(record, epoch, LEASE_MS, events(8, 20, "again")), /events_run_id_attempt_sequence_unique/);
    const rows = await stored(record.runId);
    assert.deepEqual(rows.map((r) => Number(r.sequence)), Array.from({ length: 10 }, (_, i) => i + 1));
    const eight = fromBinary(RunEventSchema, rows[7]!.payload);
    assert.equal(eight.payload.case === "progress" && eight.payload.value.message, "e8", "the stored event is untouched");
  });

  it("resumes a new lease after the highest stored sequence", async () => {
    const { record, epoch } = await leased();
    await store.storeEvents(record, epoch, LEASE_MS, events(1, 1234));
    assert.equal((await store.takeLease(record, LEASE_MS, "")).ackedSequence, 1234n);
  });
});
