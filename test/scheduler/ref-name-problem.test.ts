import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { refNameProblem } from "@corral/scheduler/runs/ref-name-problem.ts";
import { submitRunLimits } from "@corral/scheduler/runs/submit-run-limits.ts";

/** git itself, the authority on ref names. */
function gitAccepts(name: string): boolean {
  return spawnSync("git", ["check-ref-format", "--allow-onelevel", name]).status === 0;
}

// Characters that git's rules are about, mixed with ordinary ones so names of both kinds come up.
const refCharacter = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(..."ab9_-é/.".split(""), "lock") },
  { weight: 1, arbitrary: fc.constantFrom(..."@{}~^:?*[\\ \t\x7f".split(""), ".lock", "..", "//", "@{") },
);

describe("refNameProblem", () => {
  it("agrees with git check-ref-format on every name without a leading '-'", function () {
    // Hundreds of git processes; slow on a loaded machine.
    this.timeout(60_000);
    fc.assert(
      fc.property(fc.array(refCharacter, { maxLength: 12 }).map((parts) => parts.join("")), (name) => {
        fc.pre(!name.startsWith("-"));
        assert.equal(refNameProblem(name) === undefined, gitAccepts(name), JSON.stringify(name));
      }),
      { numRuns: 400 },
    );
  });

  it("accepts what people pass as base refs", () => {
    for (const name of ["main", "release/2.x", "v1.2.3", "refs/heads/main", "feature/añadir", "HEAD", "a".repeat(40)]) {
      assert.equal(refNameProblem(name), undefined, name);
      assert.ok(gitAccepts(name), name);
    }
  });

  it("refuses a leading '-', which git commands would read as an option", () => {
    assert.match(refNameProblem("-main") ?? "", /must not start with '-'/);
    assert.match(refNameProblem("--upload-pack=evil") ?? "", /must not start with '-'/);
  });

  it("refuses names longer than a file name can be", () => {
    assert.equal(refNameProblem("a".repeat(submitRunLimits.refNameBytes)), undefined);
    assert.match(refNameProblem("a".repeat(submitRunLimits.refNameBytes + 1)) ?? "", /at most/);
    // Bytes, not characters: "é" is two bytes in UTF-8.
    assert.match(refNameProblem("é".repeat(submitRunLimits.refNameBytes / 2 + 1)) ?? "", /at most/);
  });

  it("says why, in git's terms", () => {
    assert.match(refNameProblem("a..b") ?? "", /'\.\.'/);
    assert.match(refNameProblem("a@{1}") ?? "", /'@\{'/);
    assert.match(refNameProblem("x.lock") ?? "", /\.lock/);
    assert.match(refNameProblem("a b") ?? "", /spaces/);
    assert.match(refNameProblem("a\0b") ?? "", /control/);
  });

  it("passes full sha1 and sha256 object ids, so base refs may be commits", () => {
    const hex = (length: number) => "0123456789abcdef".repeat(8).slice(0, length);
    for (const id of [hex(40), hex(64), hex(40).toUpperCase()]) {
      assert.equal(refNameProblem(id), undefined, id);
      assert.ok(gitAccepts(id), id);
    }
  });
});
