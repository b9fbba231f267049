import { readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import type { Readable } from "node:stream";
import { z } from "zod";
import { ConfigError, duration, loadConfig, logLevel } from "@corral/plumbing/config.ts";

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
};

export type AgentConfig = Readonly<z.infer<z.ZodObject<typeof agentConfig>>>;

/** Validates the environment once; throws plumbing's ConfigError naming every bad variable. */
export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfig(agentConfig, env);
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

/** Reads until the first newline or the end of the stream, then stops reading. */
function readFirstLine(stream: Readable, timeoutMs: number): Promise<string | undefined> {
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
    const timer = setTimeout(() => finish(credentialError("stdin", `no credential within ${timeoutMs} ms`)), timeoutMs);
    stream.on("data", onData).once("end", onEnd).once("error", onError);
  });
}
