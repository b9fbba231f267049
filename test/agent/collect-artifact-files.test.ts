import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collectArtifactFiles } from "../../agent/src/artifacts/collect-artifact-files.ts";

describe("agent: collecting artifact files", () => {
  let root: string;
  let repo: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-collect-"));
    repo = join(root, "repo");
    for (const dir of ["reports/unit", "reports/e2e", ".git", "build", "node_modules/x"]) await mkdir(join(repo, dir), { recursive: true });
    const files: Record<string, string> = {
      "reports/unit/junit.xml": "<unit/>",
      "reports/e2e/junit.xml": "<e2e/>",
      "reports/summary.txt": "ok",
      ".git/config.xml": "never",
      "build/out.bin": "1234",
      "node_modules/x/report.xml": "dep",
    };
    for (const [path, content] of Object.entries(files)) await writeFile(join(repo, path), content);
    await writeFile(join(root, "credential"), "secret");
    // What a coding agent could plant to read files of the sandbox through an artifact glob.
    await symlink(join(root, "credential"), join(repo, "reports", "stolen.xml"));
    await symlink(root, join(repo, "outside"));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it("lists regular files matching each pattern once, relative to the repository, in pattern order", async () => {
    const collected = await collectArtifactFiles(repo, ["reports/**/*.xml", "reports/*", "build/out.bin"]);
    assert.deepEqual(collected.files.map((f) => [f.relative, f.size]), [
      ["reports/e2e/junit.xml", 6],
      ["reports/unit/junit.xml", 7],
      ["reports/summary.txt", 2],
      ["build/out.bin", 4],
    ]);
    assert.ok(collected.files.every((f) => f.path.startsWith(repo)));
    assert.deepEqual(collected.unmatched, []);
  });

  it("never follows a symbolic link out of the repository, and never searches .git", async () => {
    const collected = await collectArtifactFiles(repo, ["reports/*.xml", "outside/*", "**/config.xml", ".git/*"]);
    assert.deepEqual(collected.files, []);
    assert.deepEqual(collected.skipped, [
      { relative: "reports/stolen.xml", reason: "a symbolic link; links are not followed" },
      { relative: "outside/credential", reason: "outside the repository (through a symbolic link)" },
    ]);
    assert.deepEqual(collected.unmatched, ["**/config.xml", ".git/*"]);
  });

  it("names the patterns that matched nothing, directories included", async () => {
    const collected = await collectArtifactFiles(repo, ["coverage/*.lcov", "reports", "build/*"]);
    assert.deepEqual(collected.unmatched, ["coverage/*.lcov", "reports"]);
    assert.deepEqual(collected.files.map((f) => f.relative), ["build/out.bin"]);
  });

  it("takes at most maxFiles files and says why it skipped the rest", async () => {
    const collected = await collectArtifactFiles(repo, ["reports/**/*.xml"], { maxFiles: 1 });
    assert.deepEqual(collected.files.map((f) => f.relative), ["reports/e2e/junit.xml"]);
    assert.deepEqual(collected.skipped.filter((s) => s.reason.startsWith("more than")), [{ relative: "reports/unit/junit.xml", reason: "more than 1 files matched" }]);
  });
});
