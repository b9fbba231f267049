import { fork, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

export interface ControlPlaneProcess {
  /** Where agents reach it; the same across restarts. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** How many processes were started so far. */
  readonly starts: number;
  /** The running process (for IPC with a preloaded module). */
  readonly child: ChildProcess;
  /** kill -9: no drain, no goodbye to the streams. Resolves once the process is gone. */
  kill9(): Promise<void>;
  /** Starts a new process on the same port (after kill9); resolves when it serves. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * The control plane as its own OS process, started with the service main as `corral up` does
 * (fork, IPC "ready"), on a fixed port so that agents find the next process where the last one
 * was. Its log goes to `logFile`.
 */
export async function startControlPlaneProcess(
  env: Record<string, string>,
  logFile: string,
  port?: number,
  options: { execArgv?: string[] } = {},
): Promise<ControlPlaneProcess> {
  const fixedPort = port ?? (await freePort());
  const entry = fileURLToPath(import.meta.resolve("@corral/control-plane/main.ts"));
  let child: ChildProcess | undefined;
  let starts = 0;

  async function start(): Promise<void> {
    const fd = openSync(logFile, "a");
    const started = fork(entry, [], {
      env: { ...process.env, CORRAL_LOG_LEVEL: "info", ...env, CORRAL_CONTROL_PLANE_LISTEN: `127.0.0.1:${fixedPort}` },
      stdio: ["ignore", fd, fd, "ipc"],
      execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
    });
    closeSync(fd);
    child = started;
    starts += 1;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the control plane did not report ready in 60 s; see ${logFile}`)), 60_000);
      started.on("message", (message: { type?: string }) => {
        if (message.type !== "ready") return;
        clearTimeout(timer);
        resolve();
      });
      started.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the control plane exited during start-up (${signal ?? code}); see ${logFile}`));
      });
    });
  }

  function stop(signal: NodeJS.Signals): Promise<void> {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      running.once("exit", () => resolve());
      running.kill(signal);
    });
  }

  await start();
  return {
    url: `http://127.0.0.1:${fixedPort}`,
    port: fixedPort,
    get pid() {
      return child!.pid!;
    },
    get starts() {
      return starts;
    },
    get child() {
      return child!;
    },
    kill9: () => stop("SIGKILL"),
    start,
    async close() {
      const timer = setTimeout(() => child?.kill("SIGKILL"), 5000);
      await stop("SIGTERM");
      clearTimeout(timer);
    },
  };
}
