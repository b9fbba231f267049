import { spawn, type ChildProcess } from "node:child_process";
import { stat } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { CancelRequest, describeAbortReason } from "./cancel-request.ts";
import { isProcessGroupAlive, signalProcessGroup } from "./process-group.ts";

export type OutputStream = "stdout" | "stderr";
export type OutputListener = (stream: OutputStream, data: Uint8Array) => void;

/** How a process step ended; maps one to one onto `StepOutcome` of the contract. */
export type StepOutcome = "succeeded" | "failed" | "timed_out" | "cancelled";

export interface RunStepOptions {
  /** A string runs through `/bin/sh -c`; an array is the argv, run without a shell. */
  command: string | readonly string[];
  cwd: string;
  /** The complete environment of the process; nothing is inherited implicitly. */
  env: Readonly<Record<string, string | undefined>>;
  /** Budget of the step; undefined runs without one. */
  timeoutMs?: number;
  /** Time between SIGTERM and SIGKILL of the group; a `CancelRequest` abort reason may override it. */
  graceMs: number;
  signal?: AbortSignal;
  /** Bytes written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Uint8Array;
  /** Receives output chunks as they arrive, in order per stream. Must not throw. */
  onOutput?: OutputListener;
}

export interface StepResult {
  outcome: StepOutcome;
  exitCode?: number;
  /** The signal that ended the command, such as "SIGKILL". */
  signal?: string;
  durationMs: number;
  /** Why it did not succeed, for people. */
  message?: string;
}

const POLL_MS = 25;
/** After SIGKILL the kernel needs a moment to tear processes down. */
const KILL_SETTLE_MS = 2_000;
/** A process that escaped the group (setsid) may hold our pipes open forever; stop waiting for them. */
const STDIO_DRAIN_MS = 1_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs one command as the leader of its own process group and resolves once nothing of the
 * group is left running: on timeout or abort the whole group gets SIGTERM, then SIGKILL after
 * the grace; background processes left behind by a command that exited are terminated the
 * same way, so a step never outlives itself. Never rejects.
 */
export async function runStep(options: RunStepOptions): Promise<StepResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  if (options.signal?.aborted) {
    return { outcome: "cancelled", durationMs: 0, message: cancelMessage(options.signal, "cancelled before it started") };
  }
  const cwdProblem = await checkDirectory(options.cwd);
  if (cwdProblem) return { outcome: "failed", durationMs: elapsed(), message: cwdProblem };

  const [file, ...args] = typeof options.command === "string" ? ["/bin/sh", "-c", options.command] : options.command;
  if (file === undefined) return { outcome: "failed", durationMs: elapsed(), message: "empty command" };
  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true, // own process group, so the group can be signalled as a whole
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
  } catch (error) {
    return { outcome: "failed", durationMs: elapsed(), message: `could not start ${file}: ${(error as Error).message}` };
  }
  // "error" also reports failed kills later on; listening for good keeps those from crashing the agent.
  const spawnError = new Promise<Error>((resolve) => child.on("error", resolve));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  forwardOutput(child, options.onOutput);
  if (options.input !== undefined && child.stdin) {
    child.stdin.on("error", () => {}); // the command may exit without reading; EPIPE is not our failure
    child.stdin.end(options.input);
  }

  const pgid = child.pid;
  if (pgid === undefined) {
    const error = await spawnError;
    return { outcome: "failed", durationMs: elapsed(), message: `could not start ${file}: ${error.message}` };
  }

  let stopped: "timed_out" | "cancelled" | undefined;
  let termination: Promise<void> | undefined;
  const stop = (reason: "timed_out" | "cancelled", graceMs: number) => {
    if (termination) return;
    stopped = reason;
    termination = terminateGroup(pgid, graceMs);
  };
  // setTimeout turns anything above 2^31-1 ms into 1 ms; a budget that long is no budget.
  const timed = options.timeoutMs !== undefined && options.timeoutMs <= MAX_TIMER_MS;
  const timer = timed ? setTimeout(() => stop("timed_out", options.graceMs), options.timeoutMs) : undefined;
  const onAbort = () => stop("cancelled", graceOf(options.signal?.reason) ?? options.graceMs);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort(); // aborted while we were checking the cwd

  const exit = await exited;
  clearTimeout(timer);
  options.signal?.removeEventListener("abort", onAbort);
  if (!termination && (await isProcessGroupAlive(pgid))) termination = terminateGroup(pgid, options.graceMs);
  await termination;
  await settledWithin(closed, STDIO_DRAIN_MS);
  child.stdout?.destroy();
  child.stderr?.destroy();

  const result: StepResult = { outcome: "succeeded", durationMs: elapsed() };
  if (exit.code !== null) result.exitCode = exit.code;
  if (exit.signal !== null) result.signal = exit.signal;
  if (stopped === "timed_out") {
    result.outcome = "timed_out";
    result.message = `timed out after ${options.timeoutMs} ms`;
  } else if (stopped === "cancelled") {
    result.outcome = "cancelled";
    result.message = cancelMessage(options.signal, "cancelled");
  } else if (exit.code !== 0) {
    result.outcome = "failed";
    result.message = exit.code === null ? `killed by ${exit.signal}` : `exited with status ${exit.code}`;
  }
  return result;
}

/** SIGTERM to the group, SIGKILL after the grace if anything still runs; resolves when the group is gone. */
async function terminateGroup(pgid: number, graceMs: number): Promise<void> {
  if (!signalProcessGroup(pgid, "SIGTERM")) return;
  if (await waitForGroupExit(pgid, graceMs)) return;
  signalProcessGroup(pgid, "SIGKILL");
  await waitForGroupExit(pgid, KILL_SETTLE_MS);
}

async function waitForGroupExit(pgid: number, withinMs: number): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    if (!(await isProcessGroupAlive(pgid))) return true;
    if (performance.now() >= deadline) return false;
    await delay(Math.min(POLL_MS, Math.max(1, deadline - performance.now())));
  }
}

/** Waits for `promise`, but no longer than `ms`, without leaving a timer behind. */
async function settledWithin(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function forwardOutput(child: ChildProcess, onOutput: OutputListener | undefined): void {
  // Reading is what keeps the pipes flowing, so read even when nobody listens.
  for (const [stream, readable] of [["stdout", child.stdout], ["stderr", child.stderr]] as const) {
    readable?.on("data", (chunk: Buffer) => {
      try {
        onOutput?.(stream, chunk);
      } catch {
        // A broken listener must not crash the agent or stop the step; the chunk is lost.
      }
    });
  }
}

async function checkDirectory(cwd: string): Promise<string | undefined> {
  try {
    if (!(await stat(cwd)).isDirectory()) return `working directory ${cwd} is not a directory`;
  } catch (error) {
    // spawn would report a missing cwd as "spawn /bin/sh ENOENT", which blames the wrong file.
    return `working directory ${cwd} is not accessible: ${(error as NodeJS.ErrnoException).code ?? error}`;
  }
  return undefined;
}

function graceOf(reason: unknown): number | undefined {
  return reason instanceof CancelRequest ? reason.graceMs : undefined;
}

function cancelMessage(signal: AbortSignal | undefined, fallback: string): string {
  const reason = describeAbortReason(signal?.reason);
  return reason ? `cancelled: ${reason}` : fallback;
}
