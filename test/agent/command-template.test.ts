import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { prepareAgentCommand, renderCommandTemplate } from "../../agent/src/pipeline/command-template.ts";
import { useTempDirs } from "./support/git-fixtures.ts";

/** What the shell makes of a rendered command: the arguments printf receives, NUL-separated. */
function wordsOf(command: string): string[] {
  return execFileSync("/bin/sh", ["-c", command], { encoding: "utf8" }).split("\0").slice(0, -1);
}

describe("agent command template", () => {
  const tempDir = useTempDirs();

  it("replaces each placeholder with one shell word, whatever the value holds", () => {
    const values = {
      prompt_file: "/tmp/a dir/it's \"quoted\" $(touch pwned) `x` \\ \n next line",
      repo_dir: "/work/repo with spaces",
      run_id: "0b8e-'; rm -rf / #",
    };
    const command = renderCommandTemplate("printf '%s\\0' {prompt_file} {repo_dir} {run_id} {run_id}", values);
    assert.deepEqual(wordsOf(command), [values.prompt_file, values.repo_dir, values.run_id, values.run_id]);
  });

  it("leaves the shell's own braces alone", () => {
    // ${X} is parameter expansion, {} is find's, '{print $1}' is awk's: none of them is a placeholder.
    const command = renderCommandTemplate("X=1; printf '%s\\0' ${X} {run_id} {} {a,b} '{print $1}'", { prompt_file: "p", repo_dir: "r", run_id: "id" });
    assert.deepEqual(wordsOf(command), ["1", "id", "{}", "{a,b}", "{print $1}"]);
  });

  it("names every unknown placeholder", () => {
    assert.throws(
      () => renderCommandTemplate("goose run {prompt} --repo {repo_dir} --model {model} {prompt}", { prompt_file: "p", repo_dir: "r", run_id: "id" }),
      (error: Error) => /unknown placeholders \{prompt\}, \{model\}/.test(error.message) && /\{prompt_file\}/.test(error.message),
    );
  });

  it("writes the prompt to its own private file instead of the command line", async () => {
    const dir = await tempDir("template");
    const prompt = "Fix it; don't $(rm -rf /) \"now\"\nsecond line";
    const promptFile = join(dir, "prompt.txt");
    const command = await prepareAgentCommand({ template: "cat {prompt_file}", prompt, promptFile, repoDir: join(dir, "repo"), runId: "r1" });
    assert.ok(!command.includes("rm -rf"), command);
    assert.equal(await readFile(promptFile, "utf8"), prompt);
    assert.equal((await stat(promptFile)).mode & 0o777, 0o600);
    assert.equal(execFileSync("/bin/sh", ["-c", command], { encoding: "utf8" }), prompt);
  });
});
