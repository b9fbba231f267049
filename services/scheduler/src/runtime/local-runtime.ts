import type { ChildProcess } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "@corral/plumbing/logger.ts";
import { exitDetail, readExitFile, signalGroup, startAgentProcess } from "./agent-process.ts";
import { processIdentity } from "./proc-stat.ts";
import type { FactListener, LaunchRequest, RuntimeBackend, RuntimeFact, RuntimeHandle } from "./runtime-backend.ts";
import { createWarmPool, type WarmPoolOptions } from "./warm-pool.ts";

export interface LocalRuntimeOptions {
  /** Each attempt gets <workRoot>/<run id>/<attempt>/ and a log beside it. */
  workRoot: string;
  /** argv that starts the agent; by default this checkout's agent on this Node. */
  agentCommand?: string[];
  logger: Logger;
  /** Extra environment for agents (log level, test knobs). Never the scheduler's own secrets. */
  agentEnv?: Record<string, string>;
  /** Standby agents kept started so that a launch skips the agent's start-up; 0 (default) disables. */
  warmAgents?: number;
  /** Tuning of the warm pool: replacement of standby agents that were taken or died. */
  warmPool?: Pick<WarmPoolOptions, "restartBackoff" | "readyTimeoutMs" | "refillDelayMs">;
}

export interface LocalRuntime extends RuntimeBackend {
  /** The idle standby agents of the warm pool (for tests and diagnostics). */
  standbyAgents(): readonly { pid: number; startTime: number | undefined; ready: boolean }[];
}

/**
 * Runs each attempt's agent as a child process in its own process group and work directory.
 * The credential goes to the agent's stdin, never into its environment or argv: as the first
 * line for an agent started for the launch ("cold"), or inside the assignment line for a
 * standby agent of the warm pool, which has already loaded its modules.
 *
 * Both kinds run under a wrapper that records the exit status in a file named in the attempt's
 * handle: a cold agent's beside its work dir, a standby agent's in the pool directory, since it
 * was started before the run existed and the wrapper's environment cannot change afterwards.
 * The handle also holds the wrapper's pid and start time, which together tell a restarted
 * scheduler whether the process is still the attempt's or the pid was recycled.
 */
export function createLocalRuntime(options: LocalRuntimeOptions): LocalRuntime {
  const workRoot = resolve(options.workRoot);
  const agentCommand = options.agentCommand ?? [process.execPath, fileURLToPath(import.meta.resolve("@corral/agent/main.ts"))];
  const children = new Map<string, { child: ChildProcess; fact: RuntimeFact; detail: string }>();
  const listeners: FactListener[] = [];
  const key = (runId: string, attempt: number) => `${runId}/${attempt}`;
  const dirOf = (runId: string, attempt: number) => join(workRoot, runId, String(attempt));
  const exitFileOf = (runId: string, attempt: number) => `${dirOf(runId, attempt)}.exit`;
  // The handle, also kept beside the work dir: a scheduler that stopped between starting an agent
  // and recording its handle in the database leaves its successor this to find the process by.
  const handleFileOf = (runId: string, attempt: number) => `${dirOf(runId, attempt)}.handle.json`;
  const keepHandle = (request: LaunchRequest, handle: RuntimeHandle): RuntimeHandle => {
    writeFileSync(handleFileOf(request.runId, request.attempt), JSON.stringify(handle), { mode: 0o600 });
    return handle;
  };
  const keptHandle = async (runId: string, attempt: number): Promise<RuntimeHandle | undefined> => {
    const text = await readFile(handleFileOf(runId, attempt), "utf8").catch(() => undefined);
    try {
      const kept = text === undefined ? undefined : (JSON.parse(text) as RuntimeHandle);
      // Only ever a file inside the work root, whatever the file says.
      return kept && typeof kept.pid === "number" && (kept.exitFile === undefined || kept.exitFile.startsWith(workRoot + sep)) ? kept : undefined;
    } catch {
      return undefined;
    }
  };
  // Not a uuid, so never a run's directory.
  const poolDir = join(workRoot, ".pool");
  const pool = createWarmPool({
    size: options.warmAgents ?? 0,
    dir: poolDir,
    cwd: workRoot,
    command: agentCommand,
    env: { ...options.agentEnv },
    logger: options.logger,
    ...options.warmPool,
  });

  /** Facts for an agent this process started; a restarted scheduler asks the OS instead. */
  function track(request: LaunchRequest, child: ChildProcess): void {
    const entry = { child, fact: "running" as RuntimeFact, detail: "" };
    children.set(key(request.runId, request.attempt), entry);
    child.once("exit", (code, signal) => {
      entry.fact = code === 0 ? "succeeded" : "failed";
      entry.detail = exitDetail(code, signal);
      options.logger.info({ runId: request.runId, attempt: request.attempt, code, signal }, "agent process exited");
      for (const listener of listeners) listener(request.runId, request.attempt, entry.fact, entry.detail);
    });
  }

  /** False only when pid is alive as another process: a recycled pid must not be signalled. */
  async function mayBeOurs(handle: RuntimeHandle): Promise<boolean> {
    if (handle.startTime === undefined) return true;
    return (await processIdentity(handle.pid!, handle.startTime)) !== "other";
  }

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

      const standby = pool.take();
      if (standby) {
        // Moved before the agent can end, so the pool's sweep never takes its exit file for an
        // idle one's; the agent keeps writing to the same open file.
        try {
          renameSync(standby.logFile, logFile);
        } catch (error) {
          options.logger.warn({ err: error, logFile: standby.logFile }, "could not move the standby agent's log to its run");
        }
        track(request, standby.child);
        const { runId, attempt, credential, controlPlaneUrl, traceContext } = request;
        standby.child.stdin!.end(`${JSON.stringify({ runId, attempt, credential, workDir, controlPlaneUrl, ...traceContext })}\n`);
        options.logger.info({ runId, attempt, pid: standby.pid, logFile, warm: true }, "agent process started");
        return keepHandle(request, { pid: standby.pid, startTime: standby.startTime, exitFile: standby.exitFile });
      }

      const exitFile = exitFileOf(request.runId, request.attempt);
      const agent = await startAgentProcess({
        command: agentCommand,
        cwd: workDir,
        env: {
          ...options.agentEnv,
          CORRAL_CONTROL_PLANE_URL: request.controlPlaneUrl,
          CORRAL_RUN_ID: request.runId,
          CORRAL_ATTEMPT: String(request.attempt),
          CORRAL_WORK_DIR: workDir,
          // The launch's span: the agent's first calls join the run's trace (the environment
          // carrier of W3C trace context).
          ...(request.traceContext ? { TRACEPARENT: request.traceContext.traceparent, TRACESTATE: request.traceContext.tracestate } : {}),
        },
        exitFile,
        logFile,
      });
      track(request, agent.child);
      agent.child.stdin!.end(`${request.credential}\n`);
      options.logger.info({ runId: request.runId, attempt: request.attempt, pid: agent.pid, logFile, warm: false }, "agent process started");
      return keepHandle(request, { pid: agent.pid, startTime: agent.startTime, exitFile });
    },

    async observe(runId, attempt, recordedHandle) {
      const entry = children.get(key(runId, attempt));
      if (entry) return { fact: entry.fact, detail: entry.detail };
      const handle = recordedHandle ?? (await keptHandle(runId, attempt));
      // Not started by this process (a scheduler restart): ask the OS.
      const exitFile = handle?.exitFile ?? exitFileOf(runId, attempt);
      const recorded = async () => {
        const exit = await readExitFile(exitFile);
        if (!exit) return undefined;
        return { fact: (exit.code === 0 ? "succeeded" : "failed") as RuntimeFact, detail: exit.code === 0 ? "" : exit.detail };
      };
      const before = await recorded();
      if (before) return before;
      if (!handle?.pid) return { fact: "missing", detail: "the agent process was never started" };
      // Without its start time a pid proves nothing: it may be another process's by now.
      const identity = handle.startTime === undefined ? "other" : await processIdentity(handle.pid, handle.startTime);
      if (identity === "alive") return { fact: "running", detail: "" };
      // It may have ended between the two looks, having just recorded its status.
      return (await recorded()) ?? { fact: "missing", detail: "the agent process is gone" };
    },

    async terminate(handle, graceMs) {
      if (!handle.pid || !(await mayBeOurs(handle))) return;
      signalGroup(handle.pid, "SIGTERM");
      if (graceMs <= 0) signalGroup(handle.pid, "SIGKILL");
      else {
        setTimeout(() => {
          void mayBeOurs(handle).then((ours) => ours && signalGroup(handle.pid!, "SIGKILL"));
        }, graceMs).unref();
      }
    },

    async cleanup(runId, attempt, recordedHandle) {
      children.delete(key(runId, attempt));
      const handle = recordedHandle ?? (await keptHandle(runId, attempt));
      await rm(dirOf(runId, attempt), { recursive: true, force: true });
      await rm(exitFileOf(runId, attempt), { force: true });
      await rm(handleFileOf(runId, attempt), { force: true });
      // The handle comes from the database; only ever delete inside the work root.
      if (handle?.exitFile?.startsWith(workRoot + sep)) await rm(handle.exitFile, { force: true });
    },

    onFact(listener) {
      listeners.push(listener);
    },

    standbyAgents: () => pool.list(),

    async close() {
      // Launched agents outlive a scheduler restart on purpose: the next scheduler reconciles
      // them. Idle standby agents hold no run, so they go.
      children.clear();
      await pool.close();
    },
  };
}
