import assert from "node:assert/strict";
import { createGroupCommit } from "@corral/control-plane/attach/group-commit.ts";

/** A batch of numbers, full at `size` items. */
const batchOf = (size: number) => () => {
  const items: number[] = [];
  return { items, add: (n: number) => items.push(n), get full() { return items.length >= size; } };
};

describe("control plane: group commit", () => {
  it("writes what one message added in one write, and what came during a write in the next", async () => {
    const writes: number[][] = [];
    let release: () => void = () => {};
    const batcher = createGroupCommit({
      newBatch: batchOf(100),
      write: async (batch) => {
        writes.push([...batch.items]);
        await new Promise<void>((resolve) => (release = resolve));
      },
      onError: (error) => assert.fail(String(error)),
    });
    for (let i = 1; i <= 3; i++) batcher.batch().add(i); // one message's events
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(writes, [[1, 2, 3]]);
    for (let i = 4; i <= 9; i++) batcher.batch().add(i); // arrive while the first write is in flight
    release();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(writes, [[1, 2, 3], [4, 5, 6, 7, 8, 9]]);
    release();
    await batcher.flush();
  });

  it("seals a full batch and writes the batches one at a time, in order", async () => {
    const writes: number[][] = [];
    let inFlight = 0;
    const batcher = createGroupCommit({
      newBatch: batchOf(4),
      write: async (batch) => {
        assert.equal(++inFlight, 1, "one write at a time");
        await new Promise((resolve) => setTimeout(resolve, 2));
        writes.push([...batch.items]);
        inFlight--;
      },
      onError: (error) => assert.fail(String(error)),
    });
    for (let i = 1; i <= 10; i++) batcher.batch().add(i);
    await batcher.flush();
    assert.deepEqual(writes, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]);
  });

  it("stops at the first failed write: reports it once, drops what waits, and flush rejects", async () => {
    const errors: unknown[] = [];
    const written: number[][] = [];
    const batcher = createGroupCommit({
      newBatch: batchOf(2),
      write: async (batch) => {
        if (batch.items.includes(3)) throw new Error("lease lost");
        written.push([...batch.items]);
      },
      onError: (error) => errors.push(error),
    });
    for (let i = 1; i <= 6; i++) batcher.batch().add(i);
    await assert.rejects(batcher.flush(), /lease lost/);
    batcher.batch().add(7);
    await assert.rejects(batcher.flush(), /lease lost/);
    assert.deepEqual(written, [[1, 2]], "nothing after the failed batch is written");
    assert.equal(errors.length, 1);
  });
});
