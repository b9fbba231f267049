import { closeSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { RunEventSchema, type LogStream, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";

/** A RunEvent payload as built by callers: `{ case: "progress", value: { message } }`. */
export type EventPayload = Exclude<NonNullable<MessageInitShape<typeof RunEventSchema>["payload"]>, { case: undefined }>;

export interface LogOutput {
  step: string;
  stream: LogStream;
  data: Uint8Array;
}

export interface OutboxOptions {
  /** Largest `data` of one log.chunk event; see `logChunkBytes`. */
  chunkBytes: number;
  /** Unacknowledged events kept before log output is shed. */
  maxEvents?: number;
  /** Serialized bytes of unacknowledged events kept in memory before log output spills (or is shed). */
  maxBytes?: number;
  /**
   * A file (created, 0600) for log output that does not fit in memory while the control plane
   * cannot store it, read back as the events are sent. Unset: such output is shed.
   */
  spillFile?: string;
  /** Largest size of the spill file; beyond it log output is shed. */
  maxSpillBytes?: number;
}

/** Warning code of the run.warning that reports shed log output. */
export const LOG_OUTPUT_DROPPED = "log_output_dropped";

/**
 * Log bytes per chunk for a stream whose events may be `maxEventPayloadBytes` long and whose
 * messages `maxMessageBytes` (0: the control plane's defaults): a quarter of the smaller, so
 * the step name, time and framing always fit and a chunk never monopolises the stream; at
 * most 64 KiB.
 */
export function logChunkBytes(maxEventPayloadBytes: number, maxMessageBytes = 0): number {
  const limit = Math.min(maxEventPayloadBytes > 0 ? maxEventPayloadBytes : 256 * 1024, maxMessageBytes > 0 ? maxMessageBytes : 4 * 1024 * 1024);
  return Math.max(64, Math.min(64 * 1024, Math.floor(limit / 4)));
}

interface Entry {
  /** Undefined while the event is on disk, at `at` in the spill file. */
  event: RunEvent | undefined;
  bytes: number;
  at: number;
}

/**
 * The agent's outbox of run events: numbers them per attempt from 1 without gaps, keeps every
 * event until the control plane acknowledges it, and hands them to the sender in order,
 * starting again after the control plane's resume point when a stream is replaced.
 *
 * Bounded, with a policy per kind of event:
 * - Non-log events (phases, steps, warnings, cancellation, completion attempt) are never
 *   dropped and never wait. There are a handful per pipeline step, so they cannot grow
 *   without bound, and making the pipeline wait for the network would turn a control-plane
 *   outage into a run failure.
 * - Log output that does not fit in memory (`maxEvents` events or `maxBytes` bytes) goes to
 *   the spill file, when there is one, up to `maxSpillBytes`: a control-plane outage of
 *   minutes costs disk, not output. Spilled events are read back one by one when sent.
 * - Log output is shed when memory and the spill file are full. The
 *   pipeline's observer is synchronous and a step's output pipes must keep flowing (a blocked
 *   pipe stalls or kills the step), so log producers cannot be made to wait either. Shedding
 *   lasts until the outbox has drained to half its bounds (hysteresis, so it does not flap
 *   per chunk); then one run.warning `log_output_dropped` says how much of which steps was
 *   lost. The event stream is the live view; the complete log is the run-log artifact.
 * - Consecutive output of one step and stream is coalesced into the last log.chunk while that
 *   chunk has never been sent, which keeps the event count (and the rate limit) in check for
 *   chatty steps. A chunk that was sent once is frozen: the control plane may hold it under
 *   its sequence, so changing it would lose the difference.
 */
export function createOutbox(options: OutboxOptions) {
  const chunkBytes = options.chunkBytes;
  const maxEvents = options.maxEvents ?? 10_000;
  const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
  let entries: Entry[] = []; // entries[i] holds sequence acked + 1 + i
  let acked = 0n; // highest sequence the control plane has stored
  let cursor = 0n; // highest sequence handed to the sender on the current stream
  let sentHigh = 0n; // highest sequence ever handed to a sender: it and everything before are frozen
  let last = 0n; // highest sequence assigned
  let bytes = 0; // in memory
  let memoryEvents = 0;
  let spilledEvents = 0;
  let spilledBytes = 0;
  const maxSpillBytes = options.maxSpillBytes ?? 1024 * 1024 * 1024;
  let spillFd: number | undefined;
  let spillEnd = 0; // where the next spilled event is written
  let shedding = false;
  const dropped = { chunks: 0, bytes: 0, steps: new Set<string>() };

  const sizeOf = (event: RunEvent) => toBinary(RunEventSchema, event).byteLength;

  function append(payload: EventPayload): bigint {
    const event = create(RunEventSchema, { sequence: last + 1n, time: timestampNow(), payload } as MessageInitShape<typeof RunEventSchema>);
    // Encoding first: an event that cannot be encoded throws here without taking a sequence,
    // which would otherwise leave a gap the control plane waits on for ever.
    const size = sizeOf(event);
    last = event.sequence;
    entries.push({ event, bytes: size, at: -1 });
    bytes += size;
    memoryEvents += 1;
    return last;
  }

  /** Writes an event to the spill file and returns its entry (no event in memory). */
  function writeSpill(event: RunEvent): Entry {
    const encoded = toBinary(RunEventSchema, event);
    spillFd ??= openSync(options.spillFile!, "w+", 0o600);
    const at = spillEnd;
    writeSync(spillFd, encoded, 0, encoded.byteLength, at);
    spillEnd += encoded.byteLength;
    spilledEvents += 1;
    spilledBytes += encoded.byteLength;
    return { event: undefined, bytes: encoded.byteLength, at };
  }

  function readSpill(entry: Entry): RunEvent {
    const buffer = new Uint8Array(entry.bytes);
    readSync(spillFd!, buffer, 0, entry.bytes, entry.at);
    return fromBinary(RunEventSchema, buffer);
  }

  /** Appends log output to the spill file when it has room; false when it must be shed. */
  function spill(step: string, stream: LogStream, piece: Uint8Array): boolean {
    if (!options.spillFile || spillEnd + piece.length + 64 > maxSpillBytes) return false;
    const event = create(RunEventSchema, { sequence: last + 1n, time: timestampNow(), payload: { case: "logChunk", value: { step, stream, data: piece } } });
    entries.push(writeSpill(event));
    last = event.sequence;
    return true;
  }

  /** Tops up the last log.chunk with the start of `data` while it has never been sent; returns the bytes taken. */
  function topUp(step: string, stream: LogStream, data: Uint8Array): number {
    const tail = entries.at(-1);
    if (!tail?.event || tail.event.sequence <= sentHigh || tail.event.payload.case !== "logChunk") return 0;
    const chunk = tail.event.payload.value;
    if (chunk.step !== step || chunk.stream !== stream) return 0;
    const taken = Math.min(chunkBytes - chunk.data.length, data.length, maxBytes - bytes);
    if (taken <= 0) return 0;
    const merged = new Uint8Array(chunk.data.length + taken);
    merged.set(chunk.data);
    merged.set(data.subarray(0, taken), chunk.data.length);
    chunk.data = merged;
    const size = sizeOf(tail.event);
    bytes += size - tail.bytes;
    tail.bytes = size;
    return taken;
  }

  /** Appends the drop notice, if anything was dropped since the last one. */
  function reportDropped(): void {
    if (dropped.chunks === 0) return;
    const steps = [...dropped.steps].map((step) => `"${step}"`).join(", ");
    append({
      case: "warning",
      value: {
        code: LOG_OUTPUT_DROPPED,
        message: `${dropped.bytes} bytes of output of ${steps} (${dropped.chunks} chunks) were left out of the event stream because the control plane did not keep up`,
      },
    });
    dropped.chunks = 0;
    dropped.bytes = 0;
    dropped.steps.clear();
  }

  function forget(entry: Entry): void {
    if (entry.event) {
      bytes -= entry.bytes;
      memoryEvents -= 1;
    } else {
      spilledBytes -= entry.bytes;
      spilledEvents -= 1;
    }
  }

  function trimThrough(sequence: bigint): void {
    const count = Number(sequence - acked);
    for (const entry of entries.splice(0, count)) forget(entry);
    acked = sequence;
    if (cursor < acked) cursor = acked;
    if (spillFd !== undefined && spilledEvents === 0 && spillEnd > 0) {
      // Everything spilled is stored: the file starts over rather than growing for ever.
      ftruncateSync(spillFd, 0);
      spillEnd = 0;
    }
    if (shedding && memoryEvents <= maxEvents / 2 && bytes <= maxBytes / 2 && spillEnd <= maxSpillBytes / 2) {
      shedding = false;
      reportDropped();
    }
  }

  return {
    /** Appends a non-log event and returns its sequence. Never drops, never waits; throws if it cannot be encoded. */
    append,

    /** Appends log output, split into chunks of at most `chunkBytes`; shed while the outbox is full. */
    appendLog(output: LogOutput): void {
      const { step, stream, data } = output;
      for (let offset = shedding ? 0 : topUp(step, stream, data); offset < data.length; offset += chunkBytes) {
        const piece = data.subarray(offset, offset + chunkBytes);
        if (shedding || memoryEvents >= maxEvents || bytes + piece.length + 64 > maxBytes) {
          // A copy: the producer may reuse its buffer (the spill writes it out at once).
          if (!shedding && spill(step, stream, piece)) continue;
          shedding = true;
          dropped.chunks += 1;
          dropped.bytes += piece.length;
          dropped.steps.add(step);
          continue;
        }
        // A copy: the producer may reuse its buffer.
        append({ case: "logChunk", value: { step, stream, data: piece.slice() } });
      }
    },

    /** Appends the pending drop notice now, as before a completion; no-op when nothing was dropped. */
    reportDropped,

    /** The next event for the current stream, or undefined when the sender has caught up. */
    /** Serialized size of the event takeNext() would return, if any. */
    nextBytes(): number | undefined {
      return entries[Number(cursor - acked)]?.bytes;
    },

    takeNext(): RunEvent | undefined {
      const entry = entries[Number(cursor - acked)];
      if (!entry) return undefined;
      cursor += 1n;
      if (cursor > sentHigh) sentHigh = cursor;
      return entry.event ?? readSpill(entry);
    },

    /** The control plane stored everything through `sequence`: forget it. */
    ack(sequence: bigint): void {
      const through = sequence > last ? last : sequence;
      if (through <= acked) return;
      trimThrough(through);
    },

    /**
     * Replaces the payload of an event the control plane refused as malformed (it stored
     * nothing under that sequence), so the sequence can be resent without a gap.
     */
    replace(sequence: bigint, payload: EventPayload): void {
      const entry = entries[Number(sequence - acked - 1n)];
      if (!entry || sequence <= acked) return;
      forget(entry);
      memoryEvents += 1;
      bytes += entry.bytes;
      entry.event = create(RunEventSchema, { sequence, time: timestampNow(), payload } as MessageInitShape<typeof RunEventSchema>);
      const size = sizeOf(entry.event);
      bytes += size - entry.bytes;
      entry.bytes = size;
    },

    /**
     * A new stream starts: the control plane has stored everything through `stored`, so the
     * sender continues right after it. Throws when the control plane reports less than it
     * acknowledged before, because the trimmed events cannot be resent.
     */
    resume(stored: bigint): void {
      if (stored < acked) {
        throw new Error(`the control plane resumes after event ${stored} but had acknowledged ${acked}; acknowledged events are gone`);
      }
      if (stored > last) {
        // The control plane holds events this outbox never numbered: an earlier process of
        // the same attempt sent them. Number what is pending after them, so nothing new is
        // taken for a replay and dropped; none of it was ever sent under the new numbers.
        let next = stored;
        for (const [i, entry] of entries.entries()) {
          if (!entry.event) {
            // Rewritten at the spill file's end under its new number (the old bytes are dead).
            const event = readSpill(entry);
            event.sequence = ++next;
            forget(entry);
            entries[i] = writeSpill(event);
            continue;
          }
          entry.event.sequence = ++next;
          const size = sizeOf(entry.event);
          bytes += size - entry.bytes;
          entry.bytes = size;
        }
        acked = sentHigh = stored;
        last = next;
      } else {
        trimThrough(stored);
      }
      cursor = acked;
    },

    /** Highest sequence assigned so far (0 for none): the completion's last_sequence. */
    get lastSequence(): bigint {
      return last;
    },
    /** Highest sequence the control plane has stored. */
    get ackedSequence(): bigint {
      return acked;
    },
    /** Whether the sender has handed out every event on the current stream. */
    get caughtUp(): boolean {
      return cursor === last;
    },
    /** Whether the control plane has stored every event. */
    get drained(): boolean {
      return acked === last;
    },
    /** Unacknowledged events and their serialized bytes, in memory and spilled. */
    get size(): { events: number; bytes: number } {
      return { events: entries.length, bytes: bytes + spilledBytes };
    },
    /** Unacknowledged events and bytes in the spill file. */
    get spilled(): { events: number; bytes: number } {
      return { events: spilledEvents, bytes: spilledBytes };
    },
    /** Closes the spill file, if one was opened (the file itself stays with the work directory). */
    close(): void {
      if (spillFd !== undefined) closeSync(spillFd);
      spillFd = undefined;
    },
    /** Whether log output is being shed. */
    get shedding(): boolean {
      return shedding;
    },
  };
}

export type Outbox = ReturnType<typeof createOutbox>;
