import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { openGitCredentials, type GitCredentialHelper } from "../../agent/src/pipeline/git-credentials.ts";
import { createGitEnvironment } from "../../agent/src/pipeline/git.ts";
import { processTexts, useTempDirs } from "./support/git-fixtures.ts";

const TOKEN = "tok-7f3e9a1c-NEVER-LEAK";

/** Asks git, configured like our git steps, for the credentials of a URL (`git credential fill`). */
function fill(helper: GitCredentialHelper, env: Record<string, string>, url: string) {
  const run = spawnSync("git", [...helper.configArgs, "credential", "fill"], { env, input: `url=${url}\n\n`, encoding: "utf8" });
  return { status: run.status, stdout: run.stdout };
}

describe("git credentials through credential-cache", () => {
  const tempDir = useTempDirs();
  let env: Record<string, string>;
  let workDir: string;
  const helpers: GitCredentialHelper[] = [];
  afterEach(async () => Promise.all(helpers.splice(0).map((helper) => helper.close())));

  beforeEach(async () => {
    workDir = await tempDir("credentials");
    await mkdir(join(workDir, "home"));
    env = createGitEnvironment(join(workDir, "home"));
  });

  async function open(urlPrefix: string) {
    const helper = await openGitCredentials({ username: "x-access-token", password: TOKEN, urlPrefix }, { env });
    helpers.push(helper);
    return helper;
  }

  it("offers the credentials for URLs under the prefix and for no other", async () => {
    const helper = await open("https://git.example.com/acme/");
    const under = fill(helper, env, "https://git.example.com/acme/app.git");
    assert.equal(under.status, 0);
    assert.match(under.stdout, /^username=x-access-token$/m);
    assert.match(under.stdout, new RegExp(`^password=${TOKEN}$`, "m"));
    for (const elsewhere of ["https://git.example.com/other/app.git", "https://evil.example.com/acme/app.git", "http://git.example.com/acme/app.git"]) {
      const result = fill(helper, env, elsewhere);
      assert.notEqual(result.status, 0, `credentials offered for ${elsewhere}`);
      assert.ok(!result.stdout.includes(TOKEN), `credentials offered for ${elsewhere}`);
    }
  });

  it("keeps the token out of argv, environments and the config arguments, in a private socket directory", async () => {
    const helper = await open("https://git.example.com/");
    assert.ok(!helper.configArgs.join(" ").includes(TOKEN));
    assert.ok(!processTexts().includes(TOKEN), "the token is in some process's argv or environment");
    const socketDir = join(helper.socketPath, "..");
    assert.equal(statSync(socketDir).mode & 0o777, 0o700);
    assert.ok(!socketDir.startsWith(workDir));
    assert.equal(fill(helper, env, "https://git.example.com/app.git").status, 0, "the daemon does not answer");
  });

  it("close() stops the daemon, forgets the token and removes the directory; twice is fine", async () => {
    const helper = await open("https://git.example.com/");
    const daemonRunning = () => processTexts().includes(`credential-cache--daemon\0${helper.socketPath}`);
    assert.ok(daemonRunning(), "no daemon found for the socket");
    await helper.close();
    await helper.close();
    assert.equal(existsSync(join(helper.socketPath, "..")), false);
    assert.equal(daemonRunning(), false, "the daemon survived close()");
    const after = fill(helper, env, "https://git.example.com/app.git");
    assert.ok(!after.stdout.includes(TOKEN));
  });

  it("rejects prefixes it cannot scope safely", async () => {
    for (const urlPrefix of ["ssh://git.example.com/", "https://git.example.com/a=b/", "not a url", "https://user:pw@git.example.com/"]) {
      await assert.rejects(open(urlPrefix), /url prefix|only http/, urlPrefix);
    }
    await assert.rejects(openGitCredentials({ username: "u", password: "two\nlines", urlPrefix: "https://git.example.com/" }, { env }), /newlines/);
  });
});
