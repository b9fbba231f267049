import assert from "node:assert/strict";
import { createContainerLog, selectLog } from "../support/kube/container-log.ts";

describe("fake node container log", () => {
  const select = (text: string, options: { tailLines?: number; limitBytes?: number }) => selectLog(Buffer.from(text), options).toString();

  it("takes the last tailLines lines, counting a final unterminated line and not a final newline", () => {
    assert.equal(select("a\nb\nc\n", { tailLines: 1 }), "c\n");
    assert.equal(select("a\nb\nc\n", { tailLines: 2 }), "b\nc\n");
    assert.equal(select("a\nb\nc", { tailLines: 1 }), "c");
    assert.equal(select("a\nb\nc\n", { tailLines: 3 }), "a\nb\nc\n");
    assert.equal(select("a\nb\nc\n", { tailLines: 10 }), "a\nb\nc\n");
    assert.equal(select("a\nb\n", { tailLines: 0 }), "");
    assert.equal(select("", { tailLines: 2 }), "");
    assert.equal(select("\nx", { tailLines: 2 }), "\nx", "an empty first line is a line");
    assert.equal(select("\nx", { tailLines: 1 }), "x");
  });

  it("applies limitBytes after tailLines, from the start of what is selected", () => {
    assert.equal(select("first\nsecond\n", { limitBytes: 3 }), "fir");
    assert.equal(select("first\nsecond\n", { tailLines: 1, limitBytes: 3 }), "sec");
    assert.equal(select("ab", { limitBytes: 10 }), "ab");
  });

  it("keeps only the last limit bytes, as rotation would", () => {
    const log = createContainerLog(8);
    log.append(Buffer.from("12345"));
    log.append(Buffer.from("67890"));
    assert.equal(log.contents().toString(), "34567890");
  });

  it("passes later chunks to followers and tells them when the output ends", () => {
    const log = createContainerLog();
    log.append(Buffer.from("before "));
    const seen: string[] = [];
    let closed = false;
    const unfollow = log.follow((chunk) => seen.push(chunk.toString()), () => (closed = true));
    log.append(Buffer.from("after"));
    log.close();
    assert.deepEqual(seen, ["after"]);
    assert.equal(closed, true);
    unfollow();
    let closedLate = false;
    log.follow(() => assert.fail("no output after close"), () => (closedLate = true));
    assert.equal(closedLate, true, "following a closed log ends at once");
  });
});
