import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";

// util-linux's setpriv sets PR_SET_PDEATHSIG and then execs the binary, so the kernel kills the
// binary when the test process dies, even by SIGKILL, where no 'exit' handler runs.
const SETPRIV = "/usr/bin/setpriv";
const STOP_GRACE_MS = 10_000;

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Resolves when the process has exited, however that happened. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines of its stdout and stderr, for failure messages. */
  tail(lines?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after a grace. Idempotent. */
  stop(): Promise<void>;
}

// Every process started here, so that a test run ending without stop() leaves nothing behind.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts a long-running binary with its output appended to logFile (and this process's environment and directory, unless given). */
export async function startManagedProcess(name: string, argv: string[], logFile: string, options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<ManagedProcess> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Only synchronous work is possible here.
    process.once("exit", () => {
      for (const child of live) child.kill("SIGKILL");
    });
  }
  const [command, ...args] = existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "SIGKILL", "--", ...argv] : argv;
  const log = openSync(logFile, "a", 0o600);
  let child: ChildProcess;
  try {
    child = spawn(command!, args, { stdio: ["ignore", log, log], env: options.env, cwd: options.cwd });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: null, signal: null }));
  });
  live.add(child);
  void exited.then(() => live.delete(child));
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (error) => reject(new Error(`${name} could not be started (${argv[0]}): ${error.message}`)));
  });

  let stopping: Promise<void> | undefined;
  return {
    name,
    child,
    logFile,
    exited,
    tail: (lines = 40) => tailFile(logFile, lines),
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

export async function tailFile(file: string, lines: number): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
