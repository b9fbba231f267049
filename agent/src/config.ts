import { readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import type { Readable } from "node:stream";
import { z } from "zod";
import { ConfigError, duration, loadConfig, logLevel } from "@corral/plumbing/config.ts";
import { telemetryConfig } from "@corral/plumbing/telemetry/telemetry-config.ts";

/** "required" for a missing variable, else what was expected. */
function explain(expected: string) {
  return (issue: { input?: unknown }) => (issue.input === undefined ? "required" : `expected ${expected}`);
}

/**
 * Environment of the runner agent, validated once at start-up. The attempt's credential is
 * deliberately not here: environments leak (`/proc/<pid>/environ`, `docker inspect`, crash
 * dumps, child processes), so it arrives on stdin or in a mounted file (`readCredential`).
 */
export const agentConfig = {
  /** Base URL of the control plane's RunnerService, such as "http://127.0.0.1:8701". */
  CORRAL_CONTROL_PLANE_URL: z.url({ protocol: /^https?$/, error: explain("an http:// or https:// URL") }),
  /** The run the agent was launched for. Lax uuid check: the control plane decides what exists. */
  CORRAL_RUN_ID: z.guid({ error: explain("a run id (uuid)") }),
  /** The attempt the agent was launched for, from 1. */
  CORRAL_ATTEMPT: z.coerce.number().int().positive().default(1),
  /**
   * The run's workspace. Unset: a private temporary directory, removed when the agent exits;
   * set: used as is and left to the runtime that provided it.
   */
  CORRAL_WORK_DIR: z.string().refine(isAbsolute, "expected an absolute path").optional(),
  CORRAL_LOG_LEVEL: logLevel,
  /** A file holding the credential (its first line), for runtimes that mount a Secret read-only. */
  CORRAL_CREDENTIAL_FILE: z.string().refine(isAbsolute, "expected an absolute path").optional(),
  /** Reconnect backoff: first delay and cap of the exponential backoff with full jitter. */
  CORRAL_RECONNECT_INITIAL_DELAY: duration("250ms"),
  CORRAL_RECONNECT_MAX_DELAY: duration("10s"),
  /**
   * How long the agent keeps trying without a welcome before it gives up. By then the lease
   * has long expired and the scheduler has reconciled the run from the runtime's facts.
   */
  CORRAL_RECONNECT_GIVE_UP: duration("10m"),
  /** How often the run log's new lines go to the artifact service while a step runs (also at every step end). */
  CORRAL_RUN_LOG_FLUSH_INTERVAL: duration("2s"),
  /**
   * How long the uploads at the end of an attempt (files, diff, the run log's rest) may take
   * together, retries included, before the attempt completes without them (artifact state
   * FAILED or PARTIAL). A cancelled attempt finishes only its log, within the second budget:
   * the scheduler stops the sandbox a few seconds after the cancel's grace.
   */
  CORRAL_ARTIFACT_UPLOAD_BUDGET: duration("60s"),
  CORRAL_ARTIFACT_CANCEL_BUDGET: duration("3s"),
  /** Tracing (OTLP), as the scheduler passes it on; off unless an endpoint is set. */
  ...telemetryConfig,
  /**
   * The launch's W3C trace context (the environment carrier of traceparent/tracestate): the
   * agent's calls before it has its assignment join the run's trace. The assignment's own trace
   * context parents the attempt's spans.
   */
  TRACEPARENT: z.string().regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, "expected a W3C traceparent").optional(),
  TRACESTATE: z.string().optional(),
};

export type AgentConfig = Readonly<z.infer<z.ZodObject<typeof agentConfig>>>;

/** Validates the environment once; throws plumbing's ConfigError naming every bad variable. */
export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfig(agentConfig, env);
}

/**
 * Standby mode (`CORRAL_AGENT_STANDBY=1`): a runtime starts the agent before any run exists, so
 * that its module loading (hundreds of milliseconds) is paid ahead of time (a warm pool). What
 * identifies the attempt arrives later as one JSON line on stdin, the assignment below;
 * everything else comes from the environment as usual and is validated at start-up.
 */
export function isStandby(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CORRAL_AGENT_STANDBY;
  if (value === undefined || value === "" || value === "0") return false;
  if (value === "1") return true;
  throw new ConfigError([{ variable: "CORRAL_AGENT_STANDBY", message: `expected 1 or 0, got "${value}"` }]);
}

// The assignment supplies these instead of the environment.
const { CORRAL_CONTROL_PLANE_URL, CORRAL_RUN_ID, CORRAL_ATTEMPT, CORRAL_WORK_DIR, TRACEPARENT, TRACESTATE, ...standbyShape } = agentConfig;

export const standbyConfig = {
  ...standbyShape,
  /** A file descriptor (the local runtime passes a pipe) on which the agent says "ready" once loaded. */
  CORRAL_AGENT_READY_FD: z.coerce.number().int().min(3, "expected a file descriptor from 3").optional(),
};

export type StandbyConfig = Readonly<z.infer<z.ZodObject<typeof standbyConfig>>>;

/** Validates what a standby agent knows before its assignment; the same rules as a cold start. */
export function loadStandbyConfig(env: NodeJS.ProcessEnv = process.env): StandbyConfig {
  const config = loadConfig(standbyConfig, env);
  // The credential travels only in the assignment; a second source would be ambiguous.
  if (config.CORRAL_CREDENTIAL_FILE !== undefined) {
    throw new ConfigError([{ variable: "CORRAL_CREDENTIAL_FILE", message: "not used in standby mode: the credential comes with the assignment" }]);
  }
  return config;
}

/** The line a standby agent waits for: `{"runId","attempt","credential","workDir","controlPlaneUrl"[,"traceparent","tracestate"]}`. */
const standbyAssignment = z.object({
  runId: CORRAL_RUN_ID,
  attempt: z.number({ error: explain("a positive integer") }).int("expected a positive integer").positive("expected a positive integer"),
  credential: z.string({ error: explain("a string") }),
  workDir: z.string({ error: explain("an absolute path") }).refine(isAbsolute, "expected an absolute path"),
  controlPlaneUrl: CORRAL_CONTROL_PLANE_URL,
  /** The launch's trace context, as TRACEPARENT/TRACESTATE for an agent started for its run. */
  traceparent: TRACEPARENT,
  tracestate: TRACESTATE,
});

export type StandbyAssignment = z.infer<typeof standbyAssignment>;

/**
 * Waits for the assignment on stdin, with no time limit by default: waiting is what a standby
 * agent is for, and the end of stdin (its runtime went away) ends the wait. Problems are
 * ConfigErrors naming the field (exit 2); none of them quotes the line, which holds the credential.
 */
export async function readStandbyAssignment(options: { stdin?: Readable & { isTTY?: boolean }; timeoutMs?: number } = {}): Promise<StandbyAssignment> {
  const stdin = options.stdin ?? process.stdin;
  if (stdin.isTTY) throw credentialError("stdin", "a standby agent reads its assignment (one JSON line) from stdin; stdin is a terminal");
  const line = await readFirstLine(stdin, options.timeoutMs);
  if (!line) throw credentialError("stdin", "no assignment on the first line of stdin");
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    // JSON.parse quotes the text it choked on, and this text holds the credential.
    throw credentialError("stdin", "the assignment is not valid JSON");
  }
  const parsed = standbyAssignment.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => ({ variable: issue.path.length > 0 ? `assignment.${issue.path.join(".")}` : "assignment", message: issue.path.length > 0 ? issue.message : "expected a JSON object" })),
    );
  }
  const assignment = parsed.data;
  checked(assignment.credential, "assignment.credential", "required");
  return assignment;
}

export interface ReadCredentialOptions {
  /** CORRAL_CREDENTIAL_FILE; when set, stdin is not read. */
  file?: string;
  stdin?: Readable & { isTTY?: boolean };
  /** How long to wait for the first line on stdin; a runtime that writes nothing must not hang us. */
  timeoutMs?: number;
}

/**
 * The attempt's credential: the first line of CORRAL_CREDENTIAL_FILE when set, else of stdin
 * (the local runtime writes it there and closes stdin). Problems are ConfigErrors naming the
 * source, so start-up reports them like any other bad setting (exit 2).
 */
export async function readCredential(options: ReadCredentialOptions = {}): Promise<string> {
  if (options.file !== undefined) {
    let text: string;
    try {
      text = await readFile(options.file, "utf8");
    } catch (error) {
      throw credentialError("CORRAL_CREDENTIAL_FILE", `cannot read ${options.file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
    }
    return checked(firstLine(text), "CORRAL_CREDENTIAL_FILE", `${options.file} holds no credential on its first line`);
  }
  const stdin = options.stdin ?? process.stdin;
  if (stdin.isTTY) {
    throw credentialError("stdin", "the credential is read from stdin (first line) or CORRAL_CREDENTIAL_FILE; stdin is a terminal");
  }
  const line = await readFirstLine(stdin, options.timeoutMs ?? 30_000);
  return checked(line, "stdin", "no credential on the first line of stdin");
}

function checked(value: string | undefined, source: string, missing: string): string {
  if (!value) throw credentialError(source, missing);
  // Only the shape of a line is checked: whether the token is valid is the control plane's call.
  if (/\s/.test(value)) throw credentialError(source, "the credential contains white space");
  return value;
}

function credentialError(variable: string, message: string): ConfigError {
  return new ConfigError([{ variable, message }]);
}

function firstLine(text: string): string | undefined {
  return text.split("\n", 1)[0]?.replace(/\r$/, "").trim();
}

/** Reads until the first newline or the end of the stream, then stops reading; no timeout unless given. */
function readFirstLine(stream: Readable, timeoutMs?: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let length = 0;
    const finish = (error?: Error) => {
      clearTimeout(timer);
      stream.off("data", onData).off("end", onEnd).off("error", onError);
      // Stop reading, so an open stdin does not keep the process alive.
      stream.pause();
      if (typeof (stream as { unref?: () => void }).unref === "function") (stream as unknown as { unref(): void }).unref();
      stream.destroy();
      if (error) reject(error);
      else resolve(firstLine(Buffer.concat(parts).toString("utf8")));
    };
    const onData = (chunk: Buffer | string) => {
      const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      parts.push(buffer);
      length += buffer.length;
      if (buffer.includes(0x0a)) finish();
      else if (length > 64 * 1024) finish(credentialError("stdin", "the first line of stdin is longer than 64 KiB"));
    };
    const onEnd = () => finish();
    const onError = (error: Error) => finish(credentialError("stdin", `cannot read: ${error.message}`));
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => finish(credentialError("stdin", `no credential within ${timeoutMs} ms`)), timeoutMs);
    stream.on("data", onData).once("end", onEnd).once("error", onError);
  });
}
