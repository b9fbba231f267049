import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "@corral/plumbing/logger.ts";
import type { FactListener, LaunchRequest, RuntimeBackend, RuntimeFact, RuntimeHandle } from "./runtime-backend.ts";

export interface LocalRuntimeOptions {
  /** Each attempt gets <workRoot>/<run id>/<attempt>/ and a log beside it. */
  workRoot: string;
  /** argv that starts the agent; by default this checkout's agent on this Node. */
  agentCommand?: string[];
  logger: Logger;
  /** Extra environment for agents (log level, test knobs). Never the scheduler's own secrets. */
  agentEnv?: Record<string, string>;
}

// The agent inherits nothing else from the scheduler: DATABASE_URL and friends stay here.
const INHERITED_ENV = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];

// The agent runs under a shell that records its exit status in a file, so that a scheduler
// restarted while the agent ran can still tell success from failure (it is not the parent
// any more, and the table fails a run whose process fact is merely "missing").
const RECORD_EXIT = '"$@"; code=$?; echo "$code" > "$CORRAL_EXIT_FILE"; exit "$code"';

/**
 * Runs each attempt's agent as a child process in its own process group and work directory.
 * The credential goes to the agent's stdin, never into its environment or argv.
 */
export function createLocalRuntime(options: LocalRuntimeOptions): RuntimeBackend {
  const workRoot = resolve(options.workRoot);
  const agentCommand = options.agentCommand ?? [process.execPath, fileURLToPath(import.meta.resolve("@corral/agent/main.ts"))];
  const children = new Map<string, { child: ChildProcess; fact: RuntimeFact; detail: string }>();
  const listeners: FactListener[] = [];
  const key = (runId: string, attempt: number) => `${runId}/${attempt}`;
  const dirOf = (runId: string, attempt: number) => join(workRoot, runId, String(attempt));
  const exitFileOf = (runId: string, attempt: number) => `${dirOf(runId, attempt)}.exit`;

  return {
    name: "local",

    async preflight() {
      try {
        await mkdir(workRoot, { recursive: true });
        return { ok: true, message: `agents run as local processes under ${workRoot}` };
      } catch (error) {
        return { ok: false, message: `cannot create the work root ${workRoot}: ${(error as Error).message}` };
      }
    },

    async launch(request: LaunchRequest): Promise<RuntimeHandle> {
      const workDir = dirOf(request.runId, request.attempt);
      await mkdir(workDir, { recursive: true, mode: 0o700 });
      const logFile = `${workDir}.agent.log`;
      const log = openSync(logFile, "a", 0o600);
      const env: Record<string, string> = {};
      for (const name of INHERITED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name]!;
      Object.assign(env, options.agentEnv, {
        CORRAL_CONTROL_PLANE_URL: request.controlPlaneUrl,
        CORRAL_RUN_ID: request.runId,
        CORRAL_ATTEMPT: String(request.attempt),
        CORRAL_WORK_DIR: workDir,
        CORRAL_EXIT_FILE: exitFileOf(request.runId, request.attempt),
      });
      let child: ChildProcess;
      try {
        child = spawn("/bin/sh", ["-c", RECORD_EXIT, "corral-agent", ...agentCommand], { cwd: workDir, env, detached: true, stdio: ["pipe", log, log] });
      } finally {
        closeSync(log);
      }
      const entry = { child, fact: "running" as RuntimeFact, detail: "" };
      children.set(key(request.runId, request.attempt), entry);
      await new Promise<void>((resolveSpawn, reject) => {
        child.once("spawn", resolveSpawn);
        child.once("error", reject);
      });
      child.stdin!.on("error", () => {}); // an agent that dies at once closes its stdin first
      child.stdin!.end(`${request.credential}\n`);
      child.once("exit", (code, signal) => {
        entry.fact = code === 0 ? "succeeded" : "failed";
        entry.detail = signal ? `the agent process was killed by ${signal}` : `the agent process exited with code ${code}`;
        options.logger.info({ runId: request.runId, attempt: request.attempt, code, signal }, "agent process exited");
        for (const listener of listeners) listener(request.runId, request.attempt, entry.fact, entry.detail);
      });
      options.logger.info({ runId: request.runId, attempt: request.attempt, pid: child.pid, logFile }, "agent process started");
      return { pid: child.pid };
    },

    async observe(runId, attempt, handle) {
      const entry = children.get(key(runId, attempt));
      if (entry) return { fact: entry.fact, detail: entry.detail };
      // Not started by this process (a scheduler restart): ask the OS, and make sure the pid
      // still belongs to this attempt's agent rather than a recycled one.
      const recorded = await readFile(exitFileOf(runId, attempt), "utf8").catch(() => undefined);
      if (recorded !== undefined) {
        const code = Number(recorded.trim());
        return code === 0 ? { fact: "succeeded", detail: "" } : { fact: "failed", detail: `the agent process exited with code ${code}` };
      }
      if (!handle?.pid) return { fact: "missing", detail: "the agent process was never started" };
      const environ = await readFile(`/proc/${handle.pid}/environ`, "utf8").catch(() => "");
      const ours = environ.split("\0").includes(`CORRAL_RUN_ID=${runId}`) && environ.split("\0").includes(`CORRAL_ATTEMPT=${attempt}`);
      return ours ? { fact: "running", detail: "" } : { fact: "missing", detail: "the agent process is gone" };
    },

    async terminate(handle, graceMs) {
      if (!handle.pid) return;
      signalGroup(handle.pid, "SIGTERM");
      if (graceMs <= 0) signalGroup(handle.pid, "SIGKILL");
      else setTimeout(() => signalGroup(handle.pid!, "SIGKILL"), graceMs).unref();
    },

    async cleanup(runId, attempt) {
      children.delete(key(runId, attempt));
      await rm(dirOf(runId, attempt), { recursive: true, force: true });
      await rm(exitFileOf(runId, attempt), { force: true });
    },

    onFact(listener) {
      listeners.push(listener);
    },

    async close() {
      // Agents outlive a scheduler restart on purpose: the next scheduler reconciles them.
      children.clear();
    },
  };
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
