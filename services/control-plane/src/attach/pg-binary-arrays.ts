/**
 * One-dimensional PostgreSQL arrays in the binary format that array_recv reads, for bind
 * parameters such as `$1::bigint[]`. node-postgres sends a Buffer parameter as binary, so a
 * batch's columns reach PostgreSQL without being printed as text array literals in JavaScript
 * (quoting, hex for bytea, a date string per row) and parsed back element by element there.
 * Elements are appended as they come, into one growing buffer per array, so a batch waiting
 * for its write holds a few buffers rather than objects per row for the garbage collector.
 *
 * Layout: ndim, has-nulls flag, element type oid, then per dimension its length and lower
 * bound, then per element its byte length and bytes. No element is ever null here.
 */

export const PG_OID = { int8: 20, text: 25, bytea: 17, timestamptz: 1184, uuid: 2950 } as const;

const HEADER = 20;
/** 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;

export function createBinaryArray(oid: number, initialBytes = 4096) {
  let buffer = Buffer.allocUnsafe(Math.max(initialBytes, HEADER));
  let length = HEADER;
  let count = 0;

  /** Room for one more element of `bytes` bytes, and its length written. */
  const element = (bytes: number): number => {
    const needed = length + 4 + bytes;
    if (needed > buffer.length) {
      let size = buffer.length * 2;
      while (size < needed) size *= 2;
      const grown = Buffer.allocUnsafe(size);
      buffer.copy(grown, 0, 0, length);
      buffer = grown;
    }
    buffer.writeInt32BE(bytes, length);
    const at = length + 4;
    length = needed;
    count++;
    return at;
  };
  const int64 = (value: number, at: number) => {
    // Exact while the value is a safe integer, which callers check.
    const high = Math.floor(value / TWO_32);
    buffer.writeInt32BE(high, at);
    buffer.writeUInt32BE(value - high * TWO_32, at + 4);
  };

  return {
    get count(): number {
      return count;
    },
    /** Bytes the finished array takes. */
    get byteLength(): number {
      return count === 0 ? 12 : length;
    },
    int8(value: bigint): void {
      const at = element(8);
      const n = Number(value);
      if (Number.isSafeInteger(n)) int64(n, at);
      else buffer.writeBigInt64BE(value, at);
    },
    /** Raw element bytes: bytea, text already encoded as UTF-8, or a uuid's 16 bytes. */
    bytes(value: Uint8Array): void {
      const at = element(value.byteLength); // first: it may replace the buffer
      buffer.set(value, at);
    },
    text(value: string): void {
      const bytes = Buffer.byteLength(value);
      const at = element(bytes);
      buffer.write(value, at, bytes, "utf8");
    },
    /** A timestamptz given in Unix milliseconds (PostgreSQL keeps microseconds since 2000). */
    timestamptz(ms: number): void {
      if (!Number.isFinite(ms)) throw new RangeError(`timestamp ${count} is not a finite number of milliseconds`);
      const at = element(8);
      const micros = (ms - PG_EPOCH_MS) * 1000;
      if (Number.isSafeInteger(micros)) int64(micros, at);
      else buffer.writeBigInt64BE(BigInt(Math.round(ms - PG_EPOCH_MS)) * 1000n, at);
    },
    /** The array, ready to bind. */
    finish(): Buffer {
      if (count === 0) {
        const empty = Buffer.alloc(12);
        empty.writeInt32BE(oid, 8); // ndim 0, no nulls
        return empty;
      }
      buffer.writeInt32BE(1, 0);
      buffer.writeInt32BE(0, 4);
      buffer.writeInt32BE(oid, 8);
      buffer.writeInt32BE(count, 12);
      buffer.writeInt32BE(1, 16);
      return buffer.subarray(0, length);
    },
  };
}

export type BinaryArray = ReturnType<typeof createBinaryArray>;
