import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { corralUpEnv, startCorralUp } from "../support/corral-up.ts";
import { hostPort, loadProto, lookup, unary } from "../support/grpc-js.ts";

/** Processes whose command line mentions the given text (postgres, the services). */
function processesMentioning(text: string): string[] {
  const out = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes(text) && !line.includes("ps -eo"));
}

const startUp = (home: string) => startCorralUp([], corralUpEnv(home));

describe("corral up", function () {
  this.timeout(120_000);
  let home: string;
  before(() => {
    home = mkdtempSync(join(tmpdir(), "corral-up-"));
    // mkdtemp makes the dir 0700; as root, PostgreSQL runs as the postgres user, which must enter it.
    chmodSync(home, 0o755);
  });
  after(() => rmSync(home, { recursive: true, force: true }));

  it("starts embedded PostgreSQL, the three services and the dashboard, serves health, and stops cleanly on Ctrl-C", async () => {
    const up = startUp(home);
    const { dashboard, ...urls } = await up.ready;
    assert.deepEqual(Object.keys(urls).sort(), ["artifact", "control plane", "scheduler"]);
    // The dashboard: its page, and the scheduler's RunService through it in the Connect protocol over HTTP/1.1.
    assert.ok(dashboard, `no dashboard URL printed:\n${up.output()}`);
    const page = await fetch(dashboard);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>Corral<\/title>/);
    const runtimes = await fetch(`${dashboard}/corral.scheduler.v1.RunService/ListRuntimes`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(runtimes.status, 200);
    assert.equal(((await runtimes.json()) as { runtimes: { name: string; ok?: boolean }[] }).runtimes.find((r) => r.name === "local")?.ok, true);
    assert.match(up.output(), /postgres +embedded, data in .*\/pg/);
    assert.match(up.output(), /database schema: applied \d+ migrations?/);

    const Health = lookup(loadProto("grpc/health/v1/health.proto"), "grpc.health.v1.Health");
    const expected: Record<string, string> = {
      scheduler: "corral.scheduler.v1.RunService",
      "control plane": "corral.runner.v1.RunnerService",
      artifact: "corral.artifact.v1.ArtifactService",
    };
    for (const [name, url] of Object.entries(urls)) {
      const client = new Health(hostPort(url), grpc.credentials.createInsecure());
      const response = await unary<{ status: string }>(client, "Check", { service: expected[name]! });
      client.close();
      assert.equal(response.status, "SERVING", name);
    }
    assert.ok(processesMentioning(join(home, "pg")).length > 0, "postgres should be running from CORRAL_HOME/pg");

    assert.equal(await up.stop(), 0, up.output());
    assert.match(up.output(), /stopping…\nstopped\.\n$/);
    assert.deepEqual(processesMentioning(join(home, "pg")), [], "postgres left running");
    assert.deepEqual(processesMentioning("services/scheduler/src/main.ts").filter((l) => l.includes(home)), []);
  });

  it("starts again on the same data directory", async () => {
    const up = startUp(home);
    await up.ready;
    const exited = new Promise<number | null>((resolve) => up.child.once("exit", (code) => resolve(code)));
    up.child.kill("SIGTERM");
    assert.equal(await exited, 0, up.output());
    assert.match(up.output(), /database schema up to date/, "the second start must reuse the migrated database");
  });
});
