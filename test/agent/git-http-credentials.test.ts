import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGitEnvironment } from "../../agent/src/pipeline/git.ts";
import { runPipeline, type PipelineSpec } from "../../agent/src/pipeline/run-pipeline.ts";
import { createSeededRemote, processTexts, remoteBranch, useTempDirs, type SeededRemote } from "./support/git-fixtures.ts";
import { startGitHttpServer, type GitHttpServer } from "./support/git-http-server.ts";
import { recordingObserver, testSpec } from "./support/pipeline-harness.ts";

const USERNAME = "x-access-token";
const TOKEN = "ghs_9f8e7d6c5b4a-corral-token";
const basic = (password: string) => `Basic ${Buffer.from(`${USERNAME}:${password}`).toString("base64")}`;

/** Every regular file under `dir`, .git included, that contains `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if ((await readFile(path)).includes(needle)) found.push(path);
  }
  return found;
}

/** Credential directories in the temp dir, and processes whose argv mentions one. */
function credentialLeftovers(): { dirs: string[]; processes: string[] } {
  const processes: string[] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "latin1");
      if (cmdline.includes("corral-git-credentials-")) processes.push(`${pid}: ${cmdline.replaceAll("\0", " ")}`);
    } catch {
      // gone
    }
  }
  return { dirs: readdirSync(tmpdir()).filter((name) => name.startsWith("corral-git-credentials-")), processes };
}

describe("runPipeline over git smart HTTP with credentials", () => {
  const tempDir = useTempDirs();
  let root: string;
  let workDir: string;
  let remote: SeededRemote;
  let server: GitHttpServer;
  /** How often the token was found in some process's argv or environment while git talked to the server. */
  let exposures: number;

  beforeEach(async () => {
    exposures = 0;
    root = await tempDir("http");
    remote = await createSeededRemote(root, "repos/app.git");
    workDir = join(root, "work");
    server = await startGitHttpServer({
      projectRoot: join(root, "repos"), username: USERNAME, password: TOKEN, env: createGitEnvironment(join(root, ".home")),
      onAuthenticated: () => void (processTexts().includes(TOKEN) && exposures++),
    });
  });
  afterEach(async () => server.close());

  async function run(spec: PipelineSpec, password: string, urlPrefix = server.baseUrl, stepEnv?: Record<string, string>) {
    const recording = recordingObserver();
    const result = await runPipeline({
      spec, runId: "run-1", workDir, signal: new AbortController().signal, observer: recording.observer, stepEnv,
      gitCredentials: { username: USERNAME, password, urlPrefix },
    });
    return { result, ...recording };
  }

  it("clones and pushes with the token, which ends up in no file and no output", async () => {
    const before = credentialLeftovers();
    const [head, tail] = [TOKEN.slice(0, 10), TOKEN.slice(10)];
    const spec = testSpec(`${server.baseUrl}app.git`, {
      validationSteps: [
        // Prints the token in two writes, as a tool echoing an authenticated URL might.
        { name: "leaky", command: `printf 'https://x:%s' "$LEAK_HEAD"; sleep 0.2; printf '%s@host\\n' "$LEAK_TAIL"` },
      ],
    });
    const { result, outputOf, allOutput } = await run(spec, TOKEN, server.baseUrl, { PATH: process.env.PATH!, LEAK_HEAD: head, LEAK_TAIL: tail });

    assert.equal(result.status, "succeeded", result.reason);
    assert.equal(remoteBranch(root, remote.bare, "corral/run-1"), result.result?.commitSha);
    assert.ok(server.authorizations.includes(basic(TOKEN)), "git never sent the credentials");
    assert.equal(exposures, 0, "the token was in a process's argv or environment while git used it");
    assert.equal(outputOf("leaky"), "https://x:[redacted]@host\n");
    assert.ok(!allOutput().includes(TOKEN), "the token is in a step's output");
    assert.deepEqual(await filesContaining(workDir, TOKEN), [], "the token was written to the work dir");
    assert.deepEqual(credentialLeftovers(), before, "a credential directory or daemon outlived the run");
  });

  it("fails the clone cleanly with a wrong token", async () => {
    const before = credentialLeftovers();
    const began = performance.now();
    const { result, outcomes, outputOf, allOutput } = await run(testSpec(`${server.baseUrl}app.git`), "wrong-token");
    assert.equal(result.status, "failed");
    assert.match(result.reason ?? "", /step "clone" failed: git clone exited with status 128/);
    assert.deepEqual(outcomes(), ["clone:failed", "agent:skipped", "readme-fixed:skipped", "commit:skipped", "push:skipped"]);
    assert.ok(server.authorizations.includes(basic("wrong-token")), "the helper did not offer the credentials");
    assert.match(outputOf("clone"), /Authentication failed/);
    assert.ok(!allOutput().includes("wrong-token"));
    assert.ok(performance.now() - began < 10_000, "git waited for a prompt");
    assert.deepEqual(await filesContaining(workDir, "wrong-token"), []);
    assert.deepEqual(credentialLeftovers(), before, "a credential directory or daemon outlived the run");
  });

  it("does not offer the token to URLs outside its prefix", async () => {
    const { result } = await run(testSpec(`${server.baseUrl}app.git`), TOKEN, `${server.baseUrl}other/`);
    assert.equal(result.status, "failed");
    assert.ok(server.authorizations.length > 0);
    assert.deepEqual(server.authorizations.filter((header) => header !== ""), [], "credentials were sent outside the prefix");
  });
});
