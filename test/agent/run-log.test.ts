import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { createRunLog, outputOf, parseRunLog } from "../../agent/src/artifacts/run-log.ts";

describe("agent: run log", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-run-log-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  let clock = 0;
  const now = () => new Date(Date.UTC(2026, 10, 29, 10, 0, 0) + clock);
  const text = (value: string) => Buffer.from(value);

  it("writes one time-stamped line per output line, marking lines written without their newline", async () => {
    const path = join(dir, "format.log");
    clock = 0;
    const log = createRunLog({ path, now });
    log.write("clone", "stderr", text("Cloning into 'repo'...\n"));
    clock = 1500;
    log.write("agent", "stdout", text("step 1\nstep "));
    clock = 1600;
    log.write("agent", "stdout", text("2\n\nprogress 40%"));
    log.write("agent", "stderr", text("oops\n"));
    log.endStep("agent");
    log.close();
    assert.equal(
      await readFile(path, "utf8"),
      [
        "2026-11-29T10:00:00.000Z clone stderr | Cloning into 'repo'...",
        "2026-11-29T10:00:01.500Z agent stdout | step 1",
        "2026-11-29T10:00:01.500Z agent stdout | step 2", // stamped when the line began
        "2026-11-29T10:00:01.600Z agent stdout | ",
        "2026-11-29T10:00:01.600Z agent stderr | oops",
        "2026-11-29T10:00:01.600Z agent stdout + progress 40%",
        "",
      ].join("\n"),
    );
    assert.equal(log.size, (await readFile(path)).length);
  });

  it("holds a line back until its newline, unless it has been open for a flush or grows too long", async () => {
    const path = join(dir, "open.log");
    clock = 0;
    const log = createRunLog({ path, now, maxLineBytes: 10 });
    log.write("agent", "stdout", text("wait"));
    assert.equal(log.size, 0, "an open line is not written");
    log.flushOpenLines(new Date(now().getTime() - 1000));
    assert.equal(log.size, 0, "not open long enough");
    clock = 2000;
    log.flushOpenLines(new Date(now().getTime() - 1000));
    log.write("agent", "stdout", text("ing done\n0123456789abc"));
    log.close();
    const lines = parseRunLog(await readFile(path));
    assert.deepEqual(lines.map((l) => [l.newline, l.text.toString()]), [
      [false, "wait"],
      [true, "ing done"],
      [false, "0123456789abc"],
    ]);
    assert.equal(outputOf(lines).get("agent stdout")!.toString(), "waiting done\n0123456789abc");
  });

  it("loses nothing: any output, in any pieces, on any streams, reads back byte for byte", async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            step: fc.constantFrom("clone", "agent", "unit-tests"),
            stream: fc.constantFrom("stdout" as const, "stderr" as const),
            data: fc.uint8Array({ maxLength: 40 }).map((bytes) => bytes.map((b) => (b % 5 === 0 ? 0x0a : b))),
            flush: fc.boolean(),
          }),
          { maxLength: 30 },
        ),
        async (writes) => {
          const path = join(dir, `property-${round++}.log`);
          const log = createRunLog({ path, maxLineBytes: 16 });
          const expected = new Map<string, Buffer>();
          for (const write of writes) {
            log.write(write.step, write.stream, write.data);
            if (write.flush) log.flushOpenLines(new Date(8.64e15));
            const key = `${write.step} ${write.stream}`;
            expected.set(key, Buffer.concat([expected.get(key) ?? Buffer.alloc(0), write.data]));
          }
          log.close();
          const bytes = await readFile(path);
          assert.equal(bytes.length, log.size);
          const actual = outputOf(parseRunLog(bytes));
          for (const [key, data] of expected) if (data.length === 0) expected.delete(key);
          assert.deepEqual(new Map([...actual].map(([k, v]) => [k, v.toString("hex")])), new Map([...expected].map(([k, v]) => [k, v.toString("hex")])));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("keeps the fields apart even for a step name with white space", async () => {
    const path = join(dir, "names.log");
    const log = createRunLog({ path });
    log.write("bad name", "stdout", text("x y\n"));
    log.write("", "stdout", text("z\n"));
    log.close();
    assert.deepEqual(parseRunLog(await readFile(path)).map((l) => [l.step, l.text.toString()]), [["bad_name", "x y"], ["_", "z"]]);
  });

  it("refuses to parse what is not a run log", () => {
    assert.throws(() => parseRunLog(Buffer.from("hello\n")), /line 1 is malformed/);
    assert.throws(() => parseRunLog(Buffer.from("2026-11-29T10:00:00.000Z agent stdout ? x\n")), /line 1 has marker "\?"/);
  });
});
