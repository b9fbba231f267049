import assert from "node:assert/strict";
import fc from "fast-check";
import { createOffsetCommitter } from "@corral/artifact/uploads/offset-committer.ts";

/** A commit function whose calls the test completes by hand. */
function manualCommits() {
  const calls: { offset: number; done: () => void; fail: (e: Error) => void }[] = [];
  return {
    calls,
    commit: (offset: number) =>
      new Promise<void>((resolve, reject) => {
        calls.push({ offset, done: resolve, fail: reject });
      }),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("offset committer (group commit)", () => {
  it("commits at once, then covers everything written meanwhile with one commit", async () => {
    const commits = manualCommits();
    const committer = createOffsetCommitter({ start: 10, commit: commits.commit });
    committer.advance(20);
    await tick();
    assert.deepEqual(commits.calls.map((c) => c.offset), [20], "the first write is committed without waiting");
    committer.advance(30);
    committer.advance(40);
    committer.advance(50);
    await tick();
    assert.equal(commits.calls.length, 1, "one commit at a time");
    commits.calls[0]!.done();
    await tick();
    assert.deepEqual(commits.calls.map((c) => c.offset), [20, 50], "the next commit covers all three writes");
    assert.equal(committer.committed, 20);
    const flushed = committer.flush();
    commits.calls[1]!.done();
    assert.equal(await flushed, 50);
    assert.equal(committer.committed, 50);
  });

  it("flushes to the last write even when the trailing commit has not started", async () => {
    const committer = createOffsetCommitter({ start: 0, commit: async () => {} });
    for (let i = 1; i <= 100; i++) committer.advance(i);
    assert.equal(await committer.flush(), 100);
    assert.equal(await createOffsetCommitter({ start: 7, commit: async () => assert.fail("nothing to commit") }).flush(), 7);
  });

  it("fails every later call once a commit fails, and says so at once", async () => {
    const commits = manualCommits();
    const errors: unknown[] = [];
    const committer = createOffsetCommitter({ start: 0, commit: commits.commit, onError: (e) => errors.push(e) });
    committer.advance(5);
    await tick();
    const boom = new Error("superseded");
    commits.calls[0]!.fail(boom);
    await tick();
    assert.deepEqual(errors, [boom], "told once, without waiting for the next write");
    assert.throws(() => committer.advance(6), /superseded/);
    await assert.rejects(committer.flush(), /superseded/);
    assert.equal(committer.committed, 0);
  });

  it("never commits an offset not yet written, never goes backwards, and ends at the last write (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.nat(3)), { minLength: 1, maxLength: 40 }), async (steps) => {
        let written = 0;
        const offsets: number[] = [];
        const committer = createOffsetCommitter({
          start: 0,
          commit: async (offset) => {
            assert.ok(offset <= written, `committed ${offset} with only ${written} written`);
            offsets.push(offset);
            for (let i = (offset % 3); i > 0; i--) await tick();
          },
        });
        for (const [bytes, pause] of steps) {
          written += bytes;
          committer.advance(written);
          for (let i = 0; i < pause; i++) await tick();
        }
        assert.equal(await committer.flush(), written);
        for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i]! > offsets[i - 1]!, `commits go forward: ${offsets}`);
        assert.equal(offsets.at(-1), written);
        assert.ok(offsets.length <= steps.length);
      }),
      { numRuns: 200 },
    );
  });
});
