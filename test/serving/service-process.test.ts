import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function runService(service: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    // A clean environment, so the developer's own DATABASE_URL cannot leak into the test.
    const child = execFile(process.execPath, [`services/${service}/src/main.ts`], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }, (_error, _stdout, stderr) =>
      resolve({ code: child.exitCode, stderr }),
    );
  });
}

describe("service start-up configuration", () => {
  it("stops with exit code 2 and names the missing variable", async () => {
    const { code, stderr } = await runService("scheduler", {});
    assert.equal(code, 2);
    assert.match(stderr, /^corral-scheduler: invalid configuration:\n\s+DATABASE_URL: /m);
  });

  it("names each bad variable, and leaves the good ones out", async () => {
    const { code, stderr } = await runService("control-plane", {
      DATABASE_URL: "postgres://127.0.0.1:1/x",
      CORRAL_CONTROL_PLANE_LISTEN: "0.0.0.0",
      CORRAL_LOG_LEVEL: "chatty",
    });
    assert.equal(code, 2);
    assert.match(stderr, /CORRAL_CONTROL_PLANE_LISTEN: expected host:port, got "0.0.0.0"/);
    assert.match(stderr, /CORRAL_LOG_LEVEL: /);
    assert.doesNotMatch(stderr, /DATABASE_URL/);
  });

  it("fails start-up with exit code 1 and a message when the database is unreachable", async () => {
    const { code, stderr } = await runService("artifact", {
      DATABASE_URL: "postgres://corral:s3cret-pw@127.0.0.1:1/corral",
      CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
      CORRAL_LOG_LEVEL: "silent",
    });
    assert.equal(code, 1);
    assert.match(stderr, /^corral-artifact: start-up failed: /m);
    assert.doesNotMatch(stderr, /s3cret-pw/, "the database password must not be printed");
  });
});
