import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Logger } from "@corral/plumbing/logger.ts";
import { exitDetail, signalGroup, startAgentProcess, type AgentProcess } from "./agent-process.ts";
import { groupAlive } from "./proc-stat.ts";

export interface WarmPoolOptions {
  /** How many standby agents to keep started; 0 disables the pool. */
  size: number;
  /** Holds each standby agent's log and exit-status file: <dir>/<id>.agent.log, <id>.exit. */
  dir: string;
  /** Where standby agents wait; they enter their run's work dir when assigned. */
  cwd: string;
  command: string[];
  env: Record<string, string>;
  logger: Logger;
  /** Delay before replacing a standby agent that died, doubling per consecutive death up to maxMs. */
  restartBackoff?: { initialMs: number; maxMs: number };
  /** A standby agent that has not said "ready" by then is stopped and counts as a death. */
  readyTimeoutMs?: number;
  /**
   * How long after a take the replacement starts (default 300 ms). Its module loading is
   * hundreds of milliseconds of CPU; started at once, it competes with the attach of the agent
   * just taken, the latency the pool exists to cut (`npm run bench -- --quick` on 2 busy cores,
   * 11 runs each: submit → attached p50 averaged 1.86× a bare spawn when immediate, 1.38× with
   * 300 ms). A burst faster than an agent loads outruns the pool either way.
   */
  refillDelayMs?: number;
}

export interface StandbyAgent extends AgentProcess {
  id: string;
  logFile: string;
  exitFile: string;
  ready: boolean;
}

export interface WarmPool {
  /** A ready standby agent, now the caller's; undefined when none is ready. Starts a replacement. */
  take(): StandbyAgent | undefined;
  /** The idle standby agents (for tests and diagnostics). */
  list(): readonly { pid: number; startTime: number | undefined; ready: boolean }[];
  /** Stops the idle standby agents; taken ones are not the pool's any more. */
  close(): Promise<void>;
}

/**
 * Standby agents started ahead of demand: each has loaded its modules (most of an agent's
 * start-up) and waits on stdin for an assignment. Deaths are replaced with exponential
 * backoff, reset once a standby agent proves healthy by saying "ready", so a broken agent
 * command costs a few processes a minute rather than a spin.
 */
export function createWarmPool(options: WarmPoolOptions): WarmPool {
  const { logger } = options;
  const backoff = options.restartBackoff ?? { initialMs: 1000, maxMs: 60_000 };
  const idle = new Map<string, StandbyAgent>();
  const starting = new Set<Promise<void>>();
  let deaths = 0;
  let retryAt = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;

  function fill(): void {
    if (closed) return;
    const wait = retryAt - Date.now();
    if (wait > 0) {
      retryTimer ??= setTimeout(() => {
        retryTimer = undefined;
        fill();
      }, wait).unref();
      return;
    }
    while (idle.size + starting.size < options.size) {
      const started = startOne().finally(() => starting.delete(started));
      starting.add(started);
    }
  }

  function died(id: string, detail: string, logFile: string, exitFile: string): void {
    deaths += 1;
    const delayMs = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (deaths - 1));
    retryAt = Date.now() + delayMs;
    void (async () => {
      const logTail = await tail(logFile);
      logger.warn({ standbyId: id, detail, logTail, retryInMs: delayMs }, "standby agent died; replacing it after a backoff");
      await rm(logFile, { force: true });
      await rm(exitFile, { force: true });
    })();
    fill();
  }

  async function startOne(): Promise<void> {
    const id = randomUUID();
    const logFile = join(options.dir, `${id}.agent.log`);
    const exitFile = join(options.dir, `${id}.exit`);
    let agent: AgentProcess;
    try {
      await mkdir(options.dir, { recursive: true, mode: 0o700 });
      if (closed) return;
      agent = await startAgentProcess({
        command: options.command,
        cwd: options.cwd,
        env: { ...options.env, CORRAL_AGENT_STANDBY: "1", CORRAL_AGENT_READY_FD: "3" },
        exitFile,
        logFile,
        readyPipe: true,
      });
    } catch (error) {
      died(id, `cannot start: ${(error as Error).message}`, logFile, exitFile);
      return;
    }
    const standby: StandbyAgent = { ...agent, id, logFile, exitFile, ready: false };
    idle.set(id, standby);
    if (closed) return stop(standby);
    const readyPipe = agent.child.stdio[3] as Readable;
    const readyTimer = setTimeout(() => {
      logger.warn({ standbyId: id, pid: agent.pid }, "standby agent did not get ready in time; stopping it");
      signalGroup(agent.pid, "SIGKILL");
    }, options.readyTimeoutMs ?? 60_000).unref();
    let said = "";
    readyPipe.setEncoding("utf8").on("data", (text: string) => {
      said += text;
      if (!said.includes("ready\n")) return;
      clearTimeout(readyTimer);
      readyPipe.destroy();
      standby.ready = true;
      deaths = 0;
    });
    readyPipe.on("error", () => {});
    agent.child.once("exit", (code, signal) => {
      clearTimeout(readyTimer);
      readyPipe.destroy();
      // A taken agent is the runtime's now, and close() stops the rest on purpose.
      if (!idle.delete(id) || closed) return;
      died(id, exitDetail(code, signal), logFile, exitFile);
    });
    logger.debug({ standbyId: id, pid: agent.pid, logFile }, "standby agent started");
  }

  async function stop(standby: StandbyAgent): Promise<void> {
    // A standby agent holds no work: nothing to be polite about.
    signalGroup(standby.pid, "SIGKILL");
    // Resolve once the agent is dead too, not only its wrapper, so that "closed" means no process.
    for (const deadline = Date.now() + 5000; Date.now() < deadline && (await groupAlive(standby.pid)); ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    idle.delete(standby.id);
    await rm(standby.logFile, { force: true });
    await rm(standby.exitFile, { force: true });
  }

  if (options.size > 0) {
    // Standby agents of a scheduler that crashed see their stdin end and exit; their files remain.
    // A pair of log and exit file means one that never got a run (a taken one's log was moved).
    void sweepOrphans(options.dir).finally(fill);
  }

  return {
    take() {
      for (const standby of idle.values()) {
        if (!standby.ready || standby.child.exitCode !== null || standby.child.signalCode !== null) continue;
        idle.delete(standby.id);
        // Its files are the run's now: the caller moves the log, which also tells sweepOrphans.
        setTimeout(fill, options.refillDelayMs ?? 300).unref();
        return standby;
      }
      fill();
      return undefined;
    },
    list: () => [...idle.values()].map(({ pid, startTime, ready }) => ({ pid, startTime, ready })),
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await Promise.all(starting);
      await Promise.all([...idle.values()].map(stop));
    },
  };
}

async function sweepOrphans(dir: string): Promise<void> {
  const names = new Set(await readdir(dir).catch(() => [] as string[]));
  for (const name of names) {
    const id = name.endsWith(".exit") ? name.slice(0, -".exit".length) : undefined;
    if (id && names.has(`${id}.agent.log`)) {
      await rm(join(dir, name), { force: true });
      await rm(join(dir, `${id}.agent.log`), { force: true });
    }
  }
}

async function tail(file: string, bytes = 2048): Promise<string> {
  try {
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      const buffer = Buffer.alloc(Math.min(size, bytes));
      await handle.read(buffer, 0, buffer.length, size - buffer.length);
      return buffer.toString("utf8");
    } finally {
      await handle.close();
    }
  } catch {
    return "";
  }
}
