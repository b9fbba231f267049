import { randomFillSync } from "node:crypto";

/**
 * `count` UUIDv7s (RFC 9562: 48-bit Unix milliseconds, version 7, 74 random bits, variant 10),
 * as one buffer of 16-byte ids. Time-ordered ids go to the right edge of a primary key's
 * B-tree instead of random leaves all over it, so inserting keeps touching the same few pages
 * however large the table grows; the random bits keep them unique. One random fill serves a
 * whole batch.
 */
export function uuidV7s(count: number, nowMs = Date.now()): Buffer {
  const ids = randomFillSync(Buffer.allocUnsafe(count * 16));
  const high = Math.floor(nowMs / 0x1_0000_0000);
  const low = nowMs % 0x1_0000_0000;
  for (let at = 0; at < ids.length; at += 16) {
    ids.writeUInt16BE(high, at);
    ids.writeUInt32BE(low, at + 2);
    ids[at + 6] = (ids[at + 6]! & 0x0f) | 0x70;
    ids[at + 8] = (ids[at + 8]! & 0x3f) | 0x80;
  }
  return ids;
}
