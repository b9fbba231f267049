import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Phase, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { enumNames } from "@corral/plumbing/enum-names.ts";
import type { RunProgress } from "./attempt-store.ts";
import { EVENT_TYPES } from "./event-types.ts";
import { createBinaryArray, PG_OID } from "./pg-binary-arrays.ts";
import { uuidV7s } from "./uuid-v7.ts";

const PHASE_NAMES = enumNames<Phase>(Phase);
const TYPE_BYTES = Object.fromEntries(Object.entries(EVENT_TYPES).map(([kind, type]) => [kind, Buffer.from(type)])) as Record<keyof typeof EVENT_TYPES, Buffer>;

/** A batch is sealed at this many events, or at this many payload bytes, whichever comes first. */
export const MAX_BATCH_EVENTS = 5000;
export const MAX_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * A batch of accepted events, kept as the columns its write binds: sequence, type, time and
 * the event's protobuf binary (and an id per row, made when the batch is written), each appended to a PostgreSQL binary array as the event is
 * accepted. Nothing per event outlives `add`, so the decoded messages die young however long
 * the batch waits for the write before it. Also the run's phase and current step after it.
 */
export function createEventColumns(limits: { events?: number; bytes?: number } = {}) {
  const maxEvents = limits.events ?? MAX_BATCH_EVENTS;
  const maxBytes = limits.bytes ?? MAX_BATCH_BYTES;
  // Small to start with (an idle stream writes one event at a time); they double as needed.
  const sequences = createBinaryArray(PG_OID.int8, 512);
  const types = createBinaryArray(PG_OID.text, 512);
  const times = createBinaryArray(PG_OID.timestamptz, 512);
  const payloads = createBinaryArray(PG_OID.bytea, 2048);
  const progress: RunProgress = {};
  let first = 0n;
  let last = 0n;

  return {
    progress,
    get count(): number {
      return sequences.count;
    },
    /** The first and last sequence; the session adds contiguous sequences only. */
    get first(): bigint {
      return first;
    },
    get last(): bigint {
      return last;
    },
    /** Whether the next event belongs in a new batch. */
    get full(): boolean {
      return sequences.count >= maxEvents || payloads.byteLength >= maxBytes;
    },
    /** Adds an accepted event (with a payload and a time) and its protobuf binary. */
    add(event: RunEvent, encoded: Uint8Array): void {
      const payload = event.payload;
      if (!payload.case || !event.time) throw new Error(`event ${event.sequence} has no payload or time`);
      if (sequences.count === 0) first = event.sequence;
      last = event.sequence;
      sequences.int8(event.sequence);
      types.bytes(TYPE_BYTES[payload.case]);
      times.timestamptz(timestampMs(event.time));
      payloads.bytes(encoded);
      if (payload.case === "phaseChanged") progress.phase = PHASE_NAMES.name(payload.value.phase);
      else if (payload.case === "stepStarted") progress.currentStep = payload.value.name;
      else if (payload.case === "stepFinished") progress.currentStep = null;
    },
    /**
     * The arrays, ready to bind as uuid[], bigint[], text[], timestamptz[] and bytea[]. The ids
     * are made here, time-ordered (see uuid-v7), rather than by the column's default.
     */
    columns(): { ids: Buffer; sequences: Buffer; types: Buffer; times: Buffer; payloads: Buffer } {
      const count = sequences.count;
      const ids = createBinaryArray(PG_OID.uuid, count * 20 + 20);
      const fresh = uuidV7s(count);
      for (let at = 0; at < fresh.length; at += 16) ids.bytes(fresh.subarray(at, at + 16));
      return { ids: ids.finish(), sequences: sequences.finish(), types: types.finish(), times: times.finish(), payloads: payloads.finish() };
    },
  };
}

export type EventColumns = ReturnType<typeof createEventColumns>;
