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

  it("spaces commits by minIntervalMs, the next covering every write of the interval", async () => {
    const starts: { offset: number; at: number }[] = [];
    const committer = createOffsetCommitter({
      start: 0,
      minIntervalMs: 50,
      commit: async (offset) => {
        starts.push({ offset, at: performance.now() });
      },
    });
    committer.advance(1);
    await tick();
    committer.advance(2);
    committer.advance(3);
    await tick();
    assert.deepEqual(starts.map((s) => s.offset), [1], "the first write is committed at once, the next ones wait");
    while (starts.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(starts.map((s) => s.offset), [1, 3], "one commit covers both writes, without a flush");
    assert.ok(starts[1]!.at - starts[0]!.at >= 49, `commits started ${starts[1]!.at - starts[0]!.at} ms apart`);
    assert.equal(committer.committed, 3);
  });

  it("flushes at once, never waiting for the interval", async () => {
    const commits = manualCommits();
    // An hour: a flush that waited for it would time the test out.
    const committer = createOffsetCommitter({ start: 0, minIntervalMs: 3_600_000, commit: commits.commit });
    committer.advance(5);
    await tick();
    commits.calls[0]!.done();
    committer.advance(9);
    await tick();
    assert.equal(commits.calls.length, 1, "the second commit waits for the interval");
    const flushed = committer.flush();
    await tick();
    assert.deepEqual(commits.calls.map((c) => c.offset), [5, 9], "flush commits the trailing write at once");
    commits.calls[1]!.done();
    assert.equal(await flushed, 9);
    // Later writes wait for the interval again, until the next flush.
    committer.advance(12);
    await tick();
    committer.advance(15);
    await tick();
    assert.equal(commits.calls.length, 2);
    const again = committer.flush();
    await tick();
    assert.deepEqual(commits.calls.map((c) => c.offset), [5, 9, 15]);
    commits.calls[2]!.done();
    assert.equal(await again, 15);
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
          minIntervalMs: steps.length % 2 === 0 ? 0 : 1,
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
