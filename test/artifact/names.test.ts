import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { relative, resolve } from "node:path";
import { Code } from "@connectrpc/connect";
import fc from "fast-check";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { artifactNameProblem } from "@corral/artifact/names/artifact-name-problem.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";
import { auth, bytes, download, failure, filesUnder, startArtifactFixture, upload, wholeUpload, type ArtifactFixture } from "./support.ts";

const VALID = [
  "a",
  "logs/run.log",
  "reports/junit.xml",
  "dir/sub/file.tar.gz",
  ".hidden",
  "a/.b/c",
  "..a/b..",
  "...",
  "a b/c d",
  "ünïcødé/名前.txt",
  "x".repeat(512),
  "é".repeat(256), // 512 bytes
];

const INVALID: [string, RegExp][] = [
  ["", /empty/],
  ["/etc/passwd", /relative/],
  ["/", /relative/],
  ["..", /"\.\."/],
  ["../x", /"\.\."/],
  ["a/../b", /"\.\."/],
  ["a/..", /"\.\."/],
  [".", /"\."/],
  ["./a", /"\."/],
  ["a/./b", /"\."/],
  ["a//b", /empty segments/],
  ["a/", /empty segments/],
  ["a\u0000b", /control/],
  ["a\nb", /control/],
  ["a\rb", /control/],
  ["a\u001bb", /control/],
  ["a\u007fb", /control/],
  ["a\u0085b", /control/],
  ["a\u2028b", /control/],
  ["a\\..\\b", /separator/],
  ["C:/windows", /drive letter/],
  ["c:x", /drive letter/],
  ["x".repeat(513), /512 bytes/],
  ["€".repeat(171), /512 bytes/], // 513 bytes in 171 characters
  ["a\ud800b", /Unicode/],
];

describe("artifact names", () => {
  it("accepts relative, normalised paths of at most 512 bytes", () => {
    for (const name of VALID) assert.equal(artifactNameProblem(name), undefined, JSON.stringify(name));
  });

  it("refuses each kind of bad name, saying why", () => {
    for (const [name, why] of INVALID) assert.match(artifactNameProblem(name) ?? "(accepted)", why, JSON.stringify(name));
  });

  it("never accepts a name with a '..' segment, a leading '/', a control character or more than 512 bytes (property)", () => {
    fc.assert(
      fc.property(nameArbitrary(), (name) => {
        const dangerous =
          name.split(/[/\\]/).includes("..") || name.startsWith("/") || /[\u0000-\u001f\u007f-\u009f]/.test(name) || Buffer.byteLength(name) > 512;
        if (dangerous) assert.notEqual(artifactNameProblem(name), undefined, JSON.stringify(name));
      }),
      { numRuns: 5000 },
    );
  });
});

describe("artifact service: names and the store directory", () => {
  let fx: ArtifactFixture;
  before(async () => {
    fx = await startArtifactFixture();
  });
  after(() => fx?.close());

  it("answers every bad name with INVALID_ARGUMENT naming header.name", async () => {
    const run = await seedLaunchedRun(fx.sql);
    // A lone surrogate cannot cross the wire (protobuf encodes it as U+FFFD); the unit test covers it.
    for (const [name] of INVALID.filter(([n]) => n.isWellFormed())) {
      const error = await failure(upload(fx.client, run.token, wholeUpload({ runId: run.runId, name }, Buffer.from("x"))));
      assert.equal(error.code, Code.InvalidArgument, JSON.stringify(name));
      assert.deepEqual(error.findDetails(FieldViolationsSchema)[0]?.violations.map((v) => v.field), ["header.name"], JSON.stringify(name));
    }
    // Reads validate names the same way.
    const stat = await failure(fx.client.stat({ runId: run.runId, name: "../x" }, auth(run.token)));
    assert.equal(stat.code, Code.InvalidArgument);
  });

  it("never writes a file outside the store, nor anywhere derived from a name, whatever the name (property)", async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(nameArbitrary(), fc.integer({ min: 0, max: 3000 }), async (name, size) => {
        const run = await seedLaunchedRun(fx.sql);
        const data = bytes(size, accepted + 1);
        const before = new Set(await filesUnder(fx.sandbox));
        const problem = artifactNameProblem(name);
        const result = await upload(fx.client, run.token, wholeUpload({ runId: run.runId, name }, data)).then(
          () => undefined,
          (error: unknown) => error as { code: Code },
        );
        if (problem) {
          assert.equal(result?.code, Code.InvalidArgument, `${JSON.stringify(name)}: ${problem}`);
        } else {
          assert.equal(result, undefined, `${JSON.stringify(name)} was refused`);
          accepted++;
          assert.ok((await download(fx.client, run.token, { runId: run.runId, name })).data.equals(data));
        }
        const added = (await filesUnder(fx.sandbox)).filter((file) => !before.has(file));
        if (problem) assert.deepEqual(added, [], `a refused name stored something: ${JSON.stringify(name)}`);
        for (const file of added) assert.ok(file.startsWith("store/") && isStoreShaped(file.slice("store/".length)), `${JSON.stringify(name)} wrote ${file}`);
        if (!problem) {
          // The places a name-derived path would land, had one been used. A name that happens to
          // spell one of the store's own directories ("uploads", "blobs/sha256") finds a directory
          // there, which the store made; only a file can have come from the name.
          for (const base of [fx.storeDir, `${fx.storeDir}/uploads`, `${fx.storeDir}/blobs/sha256`]) {
            const path = resolve(base, name);
            const isFile = isFileAt(path);
            assert.ok(!isFile || isStoreShaped(relative(fx.storeDir, path)), `${JSON.stringify(name)} is at ${path}`);
          }
        }
      }),
      { numRuns: 150, examples: [["uploads", 0], ["blobs/sha256", 5], ["store", 1]] },
    );
    assert.ok(accepted > 10, `the property exercised the stored path too (${accepted} accepted)`);
    // Everything in the sandbox is in the store, by digest or by upload id.
    const files = await filesUnder(fx.sandbox);
    assert.ok(files.length > 0);
    for (const file of files) assert.ok(file.startsWith("store/") && isStoreShaped(file.slice("store/".length)), file);
  });
});

/** Whether a file is at `path`; a path the OS refuses (too long, say) has none. */
function isFileAt(path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
  } catch {
    return false;
  }
}

const isStoreShaped = (path: string) => /^(blobs\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}|uploads\/[0-9a-f-]{36})$/.test(path);

/** Names as an attacker or a sloppy client would write them: path tricks, controls, long, any Unicode. */
function nameArbitrary(): fc.Arbitrary<string> {
  const segment = fc.oneof(
    fc.constantFrom("..", ".", "", "a", "logs", "run.log", "~", "%2e%2e", "C:", "\\..", "..\\..", "\u0000", "\n", "\u202e", "é", "名前", "store", "blobs", "uploads"),
    fc.string({ maxLength: 8 }),
    fc.string({ unit: "binary", maxLength: 6 }),
  );
  return fc.oneof(
    fc.array(segment, { minLength: 1, maxLength: 8 }).map((segments) => segments.join("/")),
    fc.tuple(fc.constantFrom("/", "../", "./", "\\", "C:\\", "//"), fc.array(segment, { maxLength: 4 })).map(([lead, rest]) => lead + rest.join("/")),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.string({ minLength: 500, maxLength: 530 }),
  );
}
