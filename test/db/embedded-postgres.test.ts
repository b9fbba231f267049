import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { startEmbeddedPostgres } from "@corral/plumbing/db/embedded-postgres.ts";

const run = promisify(execFile);

interface ServerProcess {
  pid: number;
  user: string;
  args: string;
}

/** The postmaster serving the data dir and its children (checkpointer, walwriter, backends, ...). */
async function processesUsing(dataDir: string): Promise<ServerProcess[]> {
  const { stdout } = await run("ps", ["-eo", "pid=,ppid=,user:20=,args="]);
  const all = stdout.trim().split("\n").map((line) => {
    const [pid, ppid, user, ...args] = line.trim().split(/\s+/);
    return { pid: Number(pid), ppid: Number(ppid), user, args: args.join(" ") };
  });
  const postmasters = new Set(all.filter((p) => p.args.includes(dataDir)).map((p) => p.pid));
  return all.filter((p) => postmasters.has(p.pid) || postmasters.has(p.ppid)).map(({ pid, user, args }) => ({ pid, user, args }));
}

async function alive(pids: number[]): Promise<number[]> {
  const { stdout } = await run("ps", ["-eo", "pid=,stat="]);
  const live = stdout.trim().split("\n").map((line) => line.trim().split(/\s+/)).filter(([, stat]) => !stat.startsWith("Z"));
  return live.map(([pid]) => Number(pid)).filter((pid) => pids.includes(pid));
}

async function query(url: string, sql: string): Promise<pg.QueryResultRow[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe("startEmbeddedPostgres", () => {
  it("serves on 127.0.0.1 only and stops without leaving a process or its temp dir behind", async () => {
    const server = await startEmbeddedPostgres();
    let dataDir: string;
    let running: ServerProcess[];
    try {
      const [settings] = await query(
        server.url,
        "select current_setting('data_directory') as dir, current_setting('listen_addresses') as listen",
      );
      dataDir = settings.dir;
      assert.equal(settings.listen, "127.0.0.1");
      running = await processesUsing(dataDir);
      assert.ok(running.length > 1, "the postmaster and its children show up in ps while running");
      if (process.getuid?.() === 0) {
        assert.deepEqual(new Set(running.map((p) => p.user)), new Set(["postgres"]), "runs as the postgres OS user");
      }
    } finally {
      await server.stop();
    }
    assert.deepEqual(await alive(running.map((p) => p.pid)), []);
    assert.equal(existsSync(dataDir), false, "the temp data dir is removed");
  });

  it("reopens a persistent data dir without initialising it again, and keeps it on stop", async () => {
    const parent = await mkdtemp(join(tmpdir(), "corral-pg-test-"));
    // mkdtemp makes it 0700; as root the server runs as the postgres user, which must pass through it.
    await chmod(parent, 0o711);
    const dataDir = join(parent, "pg");
    try {
      const first = await startEmbeddedPostgres({ dataDir, database: "corral" });
      try {
        await query(first.url, "create table kept (value int); insert into kept values (42)");
      } finally {
        await first.stop();
      }
      assert.ok(existsSync(join(dataDir, "PG_VERSION")));

      const second = await startEmbeddedPostgres({ dataDir, database: "corral" });
      try {
        assert.deepEqual(await query(second.url, "select value from kept"), [{ value: 42 }]);
      } finally {
        await second.stop();
      }
      assert.deepEqual(await processesUsing(dataDir), []);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it("stops when its signal aborts", async () => {
    const controller = new AbortController();
    const server = await startEmbeddedPostgres({ signal: controller.signal });
    const [{ dir }] = await query(server.url, "select current_setting('data_directory') as dir");
    controller.abort();
    await server.stop(); // the stop the abort began
    assert.deepEqual(await processesUsing(dir), []);
    assert.equal(existsSync(dir), false);
  });

  it("leaves the process's exit code and signal handling to its owner", async () => {
    // embedded-postgres's own hooks call process.exit(0) on beforeExit, which would hide mocha's failure count.
    const module = fileURLToPath(import.meta.resolve("@corral/plumbing/db/embedded-postgres.ts"));
    const script = `
      import { startEmbeddedPostgres } from ${JSON.stringify(module)};
      const server = await startEmbeddedPostgres();
      await server.stop();
      process.exitCode = 3;
      if (process.listenerCount("SIGTERM") > 0) process.exitCode = 4;`;
    await assert.rejects(run(process.execPath, ["--input-type=module", "--eval", script]), { code: 3 });
  });
});
