import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { constants } from "node:os";
import { readProcStatSync } from "./proc-stat.ts";

// The agent inherits nothing else from the scheduler: DATABASE_URL and friends stay here.
const INHERITED_ENV = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];
// OpenTelemetry's settings (the collector's address, TLS files, timeouts) are the agent's too,
// so that its spans go where the scheduler's do; its service name is its own.
const inheritedTelemetry = (name: string) => name.startsWith("OTEL_") && name !== "OTEL_SERVICE_NAME";

// The agent runs under a shell that records its exit status in a file, so that a scheduler
// restarted while the agent ran can still tell success from failure (it is not the parent
// any more, and the table fails a run whose process fact is merely "missing"). The trap keeps
// the shell alive through the SIGTERM that terminate() sends the whole group, so it still
// records how the agent, which cancels its attempt on SIGTERM, ends; a trap with a command
// (unlike an ignored signal) leaves the agent's own SIGTERM disposition at the default.
const RECORD_EXIT = 'trap : TERM INT; "$@"; code=$?; echo "$code" > "$CORRAL_EXIT_FILE"; exit "$code"';

export interface AgentProcessOptions {
  /** argv of the agent itself; it runs under the exit-recording wrapper. */
  command: string[];
  cwd: string;
  /** Added to the allowlisted part of the scheduler's environment. Never a credential. */
  env: Record<string, string>;
  /** The status file the wrapper writes when the agent ends. */
  exitFile: string;
  /** stdout and stderr of the agent (appended). */
  logFile: string;
  /** Also open a pipe as fd 3, on which a standby agent says it is ready. */
  readyPipe?: boolean;
}

export interface AgentProcess {
  /** The wrapper: its pid is the process group's id, so signalling -pid reaches the agent too. */
  child: ChildProcess;
  pid: number;
  /** The wrapper's start time (see ProcStat); undefined where /proc cannot be read. */
  startTime: number | undefined;
}

/** Starts the agent detached, in its own process group, under the exit-recording wrapper. */
export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const env: Record<string, string> = {};
  for (const name of INHERITED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name]!;
  for (const [name, value] of Object.entries(process.env)) if (inheritedTelemetry(name) && value !== undefined) env[name] = value;
  Object.assign(env, options.env, { CORRAL_EXIT_FILE: options.exitFile });
  const log = openSync(options.logFile, "a", 0o600);
  const stdio: StdioOptions = options.readyPipe ? ["pipe", log, log, "pipe"] : ["pipe", log, log];
  let child: ChildProcess;
  try {
    child = spawn("/bin/sh", ["-c", RECORD_EXIT, "corral-agent", ...options.command], { cwd: options.cwd, env, detached: true, stdio });
  } finally {
    closeSync(log);
  }
  const startTime = child.pid === undefined ? undefined : readProcStatSync(child.pid)?.startTime;
  await new Promise<void>((resolveSpawn, reject) => {
    child.once("spawn", resolveSpawn);
    child.once("error", reject);
  });
  child.stdin!.on("error", () => {}); // an agent that dies at once closes its stdin first
  return { child, pid: child.pid!, startTime };
}

/** What the wrapper recorded, or undefined when it has not (yet) written the file. */
export async function readExitFile(file: string): Promise<{ code: number; detail: string } | undefined> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined || text.trim() === "") return undefined;
  const code = Number(text.trim());
  return { code, detail: exitDetail(code, null) };
}

/** For people: how the agent ended. The shell reports death by signal N as 128 + N. */
export function exitDetail(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `the agent process was killed by ${signal}`;
  const bySignal = code !== null && code > 128 ? Object.entries(constants.signals).find(([, n]) => n === code - 128)?.[0] : undefined;
  return bySignal ? `the agent process was killed by ${bySignal}` : `the agent process exited with code ${code}`;
}

export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
