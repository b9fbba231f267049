/**
 * One-dimensional PostgreSQL arrays in the binary format that array_recv reads, for bind
 * parameters such as `$1::bigint[]`. node-postgres sends a Buffer parameter as binary, so a
 * batch's columns reach PostgreSQL without being printed as text array literals in JavaScript
 * (quoting, hex for bytea, a date string per row) and parsed back element by element there.
 *
 * Layout: ndim, has-nulls flag, element type oid, then per dimension its length and lower
 * bound, then per element its byte length and bytes. No element is ever null here.
 */

const OID = { int8: 20, text: 25, bytea: 17, timestamptz: 1184 } as const;
const HEADER = 20;
/** 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

function array(oid: number, count: number, elementBytes: number, write: (buffer: Buffer, offset: number, index: number) => number): Buffer {
  if (count === 0) {
    const empty = Buffer.alloc(12);
    empty.writeInt32BE(oid, 8); // ndim 0, no nulls
    return empty;
  }
  const buffer = Buffer.allocUnsafe(HEADER + count * 4 + elementBytes);
  buffer.writeInt32BE(1, 0);
  buffer.writeInt32BE(0, 4);
  buffer.writeInt32BE(oid, 8);
  buffer.writeInt32BE(count, 12);
  buffer.writeInt32BE(1, 16);
  let offset = HEADER;
  for (let i = 0; i < count; i++) offset = write(buffer, offset, i);
  return buffer;
}

/** bigint[] */
export function int8Array(values: readonly bigint[]): Buffer {
  return array(OID.int8, values.length, values.length * 8, (buffer, offset, i) => {
    buffer.writeInt32BE(8, offset);
    return buffer.writeBigInt64BE(values[i]!, offset + 4);
  });
}

/** text[] */
export function textArray(values: readonly string[]): Buffer {
  const lengths = values.map((value) => Buffer.byteLength(value));
  return array(OID.text, values.length, lengths.reduce((a, b) => a + b, 0), (buffer, offset, i) => {
    buffer.writeInt32BE(lengths[i]!, offset);
    return offset + 4 + buffer.write(values[i]!, offset + 4, "utf8");
  });
}

/** bytea[] */
export function byteaArray(values: readonly Uint8Array[]): Buffer {
  let bytes = 0;
  for (const value of values) bytes += value.byteLength;
  return array(OID.bytea, values.length, bytes, (buffer, offset, i) => {
    const value = values[i]!;
    buffer.writeInt32BE(value.byteLength, offset);
    buffer.set(value, offset + 4);
    return offset + 4 + value.byteLength;
  });
}

/** timestamptz[], to the millisecond a Date holds: microseconds since PostgreSQL's epoch. */
export function timestamptzArray(values: readonly Date[]): Buffer {
  return array(OID.timestamptz, values.length, values.length * 8, (buffer, offset, i) => {
    const ms = values[i]!.getTime();
    if (Number.isNaN(ms)) throw new RangeError(`timestamp ${i} is an invalid date`);
    buffer.writeInt32BE(8, offset);
    return buffer.writeBigInt64BE(BigInt(ms - PG_EPOCH_MS) * 1000n, offset + 4);
  });
}
