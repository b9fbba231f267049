import { closeSync, openSync, writeSync } from "node:fs";

/** Which output a run-log line came from; the names of `corral.common.v1.LogStream`. */
export type RunLogStream = "stdout" | "stderr";

/**
 * The run log: the combined, time-stamped output of every step of an attempt, one line per
 * line of output:
 *
 *     2026-11-29T10:00:00.123Z agent stdout | Running the tests
 *     2026-11-29T10:00:01.456Z agent stdout + Downloading… 40%
 *
 * time (UTC, ms: when the line's first byte arrived), step name, stream, a marker and the text
 * exactly as the step wrote it (bytes, not necessarily UTF-8). The marker `|` means the step
 * wrote a newline there; `+` means it did not, because the line was cut: it was still open at
 * a flush, at the end of its step, or longer than `maxLineBytes`. So the output of a step and
 * stream is exactly its lines' texts, each followed by a newline where the marker is `|`
 * (`parseRunLog` and `outputOf` do that), and the log loses nothing, not even a missing final
 * newline. Step names have no spaces (the scheduler allows letters, digits, `-`, `_`, `.`; any
white space would be written as `_`).
 *
 * Lines are appended to a local spool file as they complete, with synchronous writes: the
 * pipeline's observer is synchronous, the file is the upload's source (see attempt-artifacts),
 * and memory holds only the open line of each step and stream.
 */
export function createRunLog(options: { path: string; maxLineBytes?: number; now?: () => Date }) {
  const maxLineBytes = options.maxLineBytes ?? 64 * 1024;
  const now = options.now ?? (() => new Date());
  const fd = openSync(options.path, "w", 0o600);
  /** The open line of each step and stream: its bytes so far and when it began. */
  const open = new Map<string, { step: string; stream: RunLogStream; since: Date; parts: Buffer[]; bytes: number }>();
  let size = 0;
  let closed = false;

  // White space in a step name would shift the fields; the scheduler allows none, and this keeps it so.
  const prefix = (since: Date, step: string, stream: RunLogStream, marker: "|" | "+") => `${since.toISOString()} ${step.replace(/\s/g, "_") || "_"} ${stream} ${marker} `;

  function append(pieces: Buffer[]): void {
    if (pieces.length === 0 || closed) return;
    const buffer = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    let written = 0;
    while (written < buffer.length) written += writeSync(fd, buffer, written, buffer.length - written);
    size += buffer.length;
  }

  /** The open line of `key` as a `+` piece, if there is one. */
  function cut(key: string, out: Buffer[]): void {
    const line = open.get(key);
    if (!line) return;
    open.delete(key);
    out.push(Buffer.from(prefix(line.since, line.step, line.stream, "+")), ...line.parts, NEWLINE);
  }

  return {
    /** Appends output of a step; complete lines go to the file now, the open rest waits for more. */
    write(step: string, stream: RunLogStream, data: Uint8Array): void {
      const key = `${step}\u0000${stream}`;
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const out: Buffer[] = [];
      let start = 0;
      while (start < bytes.length) {
        const newline = bytes.indexOf(0x0a, start);
        const end = newline === -1 ? bytes.length : newline;
        let line = open.get(key);
        if (!line) open.set(key, (line = { step, stream, since: now(), parts: [], bytes: 0 }));
        // Copies: the caller may reuse its buffer.
        if (end > start) {
          line.parts.push(Buffer.from(bytes.subarray(start, end)));
          line.bytes += end - start;
        }
        if (newline !== -1) {
          open.delete(key);
          out.push(Buffer.from(prefix(line.since, step, stream, "|")), ...line.parts, NEWLINE);
        } else if (line.bytes >= maxLineBytes) {
          cut(key, out);
        }
        start = end + 1;
      }
      append(out);
    },

    /** Writes every open line of `step` as a `+` piece (the step ended without a final newline). */
    endStep(step: string): void {
      const out: Buffer[] = [];
      for (const [key, line] of open) if (line.step === step) cut(key, out);
      append(out);
    },

    /** Writes every line open since before `olderThan` as a `+` piece, so a reader is not kept waiting for a newline. */
    flushOpenLines(olderThan: Date = now()): void {
      const out: Buffer[] = [];
      for (const [key, line] of open) if (line.since <= olderThan) cut(key, out);
      append(out);
    },

    /** Bytes in the file so far. */
    get size(): number {
      return size;
    },

    /** Writes every open line, then closes the file; later writes are ignored. */
    close(): void {
      if (closed) return;
      this.flushOpenLines(new Date(8.64e15));
      closed = true;
      closeSync(fd);
    },
  };
}

export type RunLog = ReturnType<typeof createRunLog>;

const NEWLINE = Buffer.from("\n");

export interface RunLogLine {
  time: string;
  step: string;
  stream: string;
  /** False for a `+` line: the output had no newline at its end. */
  newline: boolean;
  text: Buffer;
}

/** The lines of a run log (whole lines only: a last line without its newline is left out). */
export function parseRunLog(log: Uint8Array): RunLogLine[] {
  const bytes = Buffer.from(log.buffer, log.byteOffset, log.byteLength);
  const lines: RunLogLine[] = [];
  let start = 0;
  for (let newline = bytes.indexOf(0x0a, start); newline !== -1; start = newline + 1, newline = bytes.indexOf(0x0a, start)) {
    const line = bytes.subarray(start, newline);
    const fields: string[] = [];
    let at = 0;
    for (let i = 0; i < 4; i++) {
      const space = line.indexOf(0x20, at);
      if (space === -1) throw new Error(`run log line ${lines.length + 1} is malformed`);
      fields.push(line.subarray(at, space).toString("latin1"));
      at = space + 1;
    }
    const [time, step, stream, marker] = fields as [string, string, string, string];
    if (marker !== "|" && marker !== "+") throw new Error(`run log line ${lines.length + 1} has marker ${JSON.stringify(marker)}`);
    lines.push({ time, step, stream, newline: marker === "|", text: Buffer.from(line.subarray(at)) });
  }
  return lines;
}

/** The output of each step and stream (`step stream` → bytes) as the steps wrote it. */
export function outputOf(lines: readonly RunLogLine[]): Map<string, Buffer> {
  const parts = new Map<string, Buffer[]>();
  for (const line of lines) {
    const key = `${line.step} ${line.stream}`;
    let list = parts.get(key);
    if (!list) parts.set(key, (list = []));
    list.push(line.text);
    if (line.newline) list.push(NEWLINE);
  }
  return new Map([...parts].map(([key, list]) => [key, Buffer.concat(list)]));
}
