import assert from "node:assert/strict";
import { uuidV7s } from "@corral/control-plane/attach/uuid-v7.ts";

const hex = (ids: Buffer, i: number) => ids.subarray(i * 16, i * 16 + 16).toString("hex");

describe("control plane: UUIDv7 event ids", () => {
  it("carries the time in its first 48 bits, version 7 and the RFC 9562 variant", () => {
    const now = Date.UTC(2026, 10, 29, 12, 34, 56, 789);
    const ids = uuidV7s(1000, now);
    assert.equal(ids.length, 16_000);
    for (let i = 0; i < 1000; i++) {
      const id = ids.subarray(i * 16, i * 16 + 16);
      assert.equal(id.readUIntBE(0, 6), now);
      assert.equal(id[6]! >> 4, 7, "version");
      assert.equal(id[8]! >> 6, 0b10, "variant");
    }
  });

  it("is unique, and later ids sort after earlier ones", () => {
    const earlier = uuidV7s(5000, 1_800_000_000_000);
    const later = uuidV7s(5000, 1_800_000_000_001);
    const all = new Set<string>();
    for (let i = 0; i < 5000; i++) all.add(hex(earlier, i)).add(hex(later, i));
    assert.equal(all.size, 10_000);
    let maxEarlier = "";
    let minLater = "g";
    for (let i = 0; i < 5000; i++) {
      if (hex(earlier, i) > maxEarlier) maxEarlier = hex(earlier, i);
      if (hex(later, i) < minLater) minLater = hex(later, i);
    }
    assert.ok(maxEarlier < minLater);
  });

  it("handles times past 2^32 ms and the far future of 48 bits", () => {
    for (const now of [0, 2 ** 32 - 1, 2 ** 32, 2 ** 48 - 1]) assert.equal(uuidV7s(1, now).readUIntBE(0, 6), now);
    assert.equal(uuidV7s(0).length, 0);
  });
});
