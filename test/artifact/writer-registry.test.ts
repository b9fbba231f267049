import assert from "node:assert/strict";
import { createWriterRegistry } from "@corral/artifact/uploads/writer-registry.ts";

const settled = async (promise: Promise<unknown>) => {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
};

describe("writer registry", () => {
  it("lets a newer stream in only once the older one is done, telling the older one to stop", async () => {
    const registry = createWriterRegistry();
    const stopped: string[] = [];
    const first = registry.claim("u1", () => stopped.push("first"));
    assert.equal(await settled(first.ready), true, "nobody was writing");
    const second = registry.claim("u1", () => stopped.push("second"));
    assert.deepEqual(stopped, ["first"]);
    assert.equal(await settled(second.ready), false, "waits for the first to let go");
    // A third arrives while the second still waits: the second is told to stop, the third waits for it.
    const third = registry.claim("u1", () => stopped.push("third"));
    assert.deepEqual(stopped, ["first", "second"]);
    first.release();
    assert.equal(await settled(second.ready), true);
    assert.equal(await settled(third.ready), false);
    second.release();
    assert.equal(await settled(third.ready), true);
    assert.equal(registry.active, 1);
    third.release();
    assert.equal(registry.active, 0);
    // Other uploads are independent.
    const other = registry.claim("u2", () => stopped.push("other"));
    assert.equal(await settled(other.ready), true);
  });
});
