import { fork, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from "@corral/plumbing/db/embedded-postgres.ts";
import { openDatabase } from "@corral/plumbing/db/open-database.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { ensureServiceToken, SERVICE_TOKEN_FILE } from "../artifacts/service-token.ts";
import { CONTROL_PLANE_NODE_FLAGS } from "@corral/control-plane/node-flags.ts";

export interface StackOptions {
  /** Directory for the embedded database, logs and other state. */
  home: string;
  /** Use this PostgreSQL instead of starting an embedded one. */
  databaseUrl?: string;
  /** Environment given to every service (listen addresses, log level, ...). */
  env: NodeJS.ProcessEnv;
  /** Longest a service may take to report ready. */
  startTimeoutMs?: number;
  /** Called with progress lines, for people. */
  progress?: (line: string) => void;
}

export interface ServiceProcess {
  name: string;
  url: string;
  /** Its Prometheus endpoint, when it serves one. */
  metricsUrl?: string;
  logFile: string;
  child: ChildProcess;
}

export interface Stack {
  databaseUrl: string;
  embedded: boolean;
  /** The file holding the artifact service token, when the stack made or reused one. */
  serviceTokenFile: string | undefined;
  services: ServiceProcess[];
  /** Resolves with the first service that exits while the stack is up. */
  readonly failed: Promise<ServiceProcess>;
  /** Stops the services (SIGTERM, then SIGKILL after the grace), then the database. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * The services `corral up` starts, by package entry point, in dependency order: each later
 * service is told the actual address of the earlier ones (ports may be 0, chosen at start).
 */
const SERVICES = [
  { name: "artifact", entry: "@corral/artifact/main.ts", urlVariable: "CORRAL_ARTIFACT_URL" },
  // With its V8 flags (a capped young generation: it holds thousands of idle streams), as deployed.
  { name: "control-plane", entry: "@corral/control-plane/main.ts", urlVariable: "CORRAL_CONTROL_PLANE_URL", nodeFlags: CONTROL_PLANE_NODE_FLAGS },
  { name: "scheduler", entry: "@corral/scheduler/main.ts", urlVariable: "CORRAL_SCHEDULER_URL" },
  // Last: it forwards to the scheduler and the artifact service (with the stack's service token).
  { name: "web", entry: "@corral/web/main.ts", urlVariable: "CORRAL_WEB_URL" },
];

/**
 * Starts the all-in-one stack: PostgreSQL, the schema, then each service as its own process
 * (the same processes a cluster runs), each logging to a file under home/logs.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const progress = options.progress ?? (() => {});
  const home = resolve(options.home);
  const logs = join(home, "logs");
  mkdirSync(logs, { recursive: true });

  let postgres: EmbeddedPostgresServer | undefined;
  let databaseUrl = options.databaseUrl;
  if (!databaseUrl) {
    progress(`starting embedded PostgreSQL (data in ${join(home, "pg")})`);
    postgres = await startEmbeddedPostgres({ dataDir: join(home, "pg"), database: "corral" });
    databaseUrl = postgres.url;
  }

  const services: ServiceProcess[] = [];
  let serviceTokenFile: string | undefined;
  const stopServices = async (graceMs: number) => {
    await Promise.all(services.map((s) => stopChild(s.child, graceMs)));
  };
  try {
    // Migrate once here so the services do not queue on the migration lock at start-up.
    const logger = createLogger({ name: "corral-up", level: "warn" });
    const database = await openDatabase({ url: databaseUrl, logger });
    await database.close();
    const count = database.applied.length;
    progress(count === 0 ? "database schema up to date" : `database schema: applied ${count} migration${count === 1 ? "" : "s"}`);

    const env: NodeJS.ProcessEnv = {
      CORRAL_WORK_ROOT: join(home, "work"),
      CORRAL_ARTIFACT_DIR: join(home, "artifacts"),
      ...options.env,
      DATABASE_URL: databaseUrl,
    };
    // The token the stack's services (and `corral logs`, `corral artifacts`) read artifacts
    // with: kept in home (0600), the same across restarts, unless the environment brings one.
    if (!env.CORRAL_ARTIFACT_SERVICE_TOKEN) {
      env.CORRAL_ARTIFACT_SERVICE_TOKEN = await ensureServiceToken(home);
      serviceTokenFile = join(home, SERVICE_TOKEN_FILE);
    }
    Object.assign(env, metricsDefaults(env));
    for (const service of SERVICES) {
      progress(`starting ${service.name}`);
      const started = await startService(service.name, service.entry, logs, env, options.startTimeoutMs ?? 60_000, service.nodeFlags);
      services.push(started);
      env[service.urlVariable] ??= started.url;
    }
  } catch (error) {
    await stopServices(2000);
    await postgres?.stop();
    throw error;
  }

  let stopping = false;
  const failed = new Promise<ServiceProcess>((resolveFailed) => {
    for (const service of services) {
      service.child.once("exit", () => {
        if (!stopping) resolveFailed(service);
      });
    }
  });
  return {
    databaseUrl,
    embedded: postgres !== undefined,
    serviceTokenFile,
    services,
    failed,
    async stop(graceMs = 10_000) {
      stopping = true;
      await stopServices(graceMs);
      await postgres?.stop();
    },
  };
}

async function startService(
  name: string,
  entry: string,
  logs: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  nodeFlags: readonly string[] = [],
): Promise<ServiceProcess> {
  const logFile = join(logs, `${name}.log`);
  const fd = openSync(logFile, "a");
  // Each service gets its own process group, so a Ctrl-C in the terminal reaches only
  // `corral up`, which then drains the services in order. The IPC channel stays open: a
  // service whose supervisor dies sees it close and drains itself.
  const child = fork(fileURLToPath(import.meta.resolve(entry)), [], {
    env,
    detached: true,
    stdio: ["ignore", fd, fd, "ipc"],
    execArgv: [...process.execArgv, ...nodeFlags],
  });
  closeSync(fd);
  try {
    const ready = await new Promise<{ url: string; metricsUrl?: string }>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not report ready within ${timeoutMs} ms; see ${logFile}`)), timeoutMs);
      child.on("message", (message: { type?: string; url?: string; metricsUrl?: string }) => {
        if (message.type === "ready" && message.url) {
          clearTimeout(timer);
          resolveReady({ url: message.url, ...(message.metricsUrl ? { metricsUrl: message.metricsUrl } : {}) });
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const why = lastFailure(logFile);
        reject(new Error(`${name} exited during start-up (${signal ?? `code ${code}`})${why ? `: ${why}` : ""}; see ${logFile}`));
      });
    });
    return { name, ...ready, logFile, child };
  } catch (error) {
    await stopChild(child, 2000);
    throw error;
  }
}

/**
 * Each service's Prometheus endpoint, unless the environment sets it: on the service's host, at
 * its gRPC port + 1000 (scheduler 9700, control plane 9701, artifact 9702 by default); a service
 * on a port chosen at start (0) gets a metrics port chosen at start too.
 */
function metricsDefaults(env: NodeJS.ProcessEnv): Record<string, string> {
  const services = [
    { listen: "CORRAL_SCHEDULER_LISTEN", metrics: "CORRAL_SCHEDULER_METRICS_LISTEN", fallback: "127.0.0.1:8700" },
    { listen: "CORRAL_CONTROL_PLANE_LISTEN", metrics: "CORRAL_CONTROL_PLANE_METRICS_LISTEN", fallback: "127.0.0.1:8701" },
    { listen: "CORRAL_ARTIFACT_LISTEN", metrics: "CORRAL_ARTIFACT_METRICS_LISTEN", fallback: "127.0.0.1:8702" },
  ];
  const defaults: Record<string, string> = {};
  for (const service of services) {
    if (env[service.metrics]) continue;
    const match = /^(.*):(\d+)$/.exec(env[service.listen] || service.fallback);
    // A listen address the service will refuse anyway: let it say why, with no metrics in the way.
    if (!match) continue;
    const port = Number(match[2]);
    defaults[service.metrics] = `${match[1]}:${port === 0 ? 0 : port + 1000}`;
  }
  return defaults;
}

function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolveStopped) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolveStopped();
    });
    child.kill("SIGTERM");
  });
}

/** The error of the last error-level line of a service's JSON log: why it stopped. */
function lastFailure(logFile: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(logFile, "utf8").slice(-64 * 1024);
  } catch {
    return undefined;
  }
  for (const line of text.trimEnd().split("\n").reverse()) {
    try {
      const entry = JSON.parse(line) as { level?: number | string; msg?: string; err?: { message?: string } };
      // pino's numeric levels, or their labels where the logger prints those.
      if (entry.level === "error" || entry.level === "fatal" || (typeof entry.level === "number" && entry.level >= 50)) return entry.err?.message ?? entry.msg;
    } catch {
      // not a log line (a stack trace printed before the logger existed)
    }
  }
  return undefined;
}
