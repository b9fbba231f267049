import assert from "node:assert/strict";
import { settlesWithin } from "@corral/plumbing/settles-within.ts";

describe("settlesWithin", () => {
  const after = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("is true for a promise that fulfils in time, false for one that does not", async () => {
    assert.equal(await settlesWithin(after(5), 500), true);
    assert.equal(await settlesWithin(new Promise(() => {}), 30), false);
  });

  it("passes on a rejection that comes in time", async () => {
    await assert.rejects(settlesWithin(Promise.reject(new Error("broke")), 500), /broke/);
  });

});
