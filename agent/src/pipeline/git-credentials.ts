import { spawn } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { shellQuote } from "./command-template.ts";
import { runStep } from "./run-step.ts";

/** Mirrors `corral.runner.v1.GitCredentials` (without expires_at, which git does not need). */
export interface GitCredentials {
  username: string;
  password: string;
  /** Offered only for URLs under this prefix, such as "https://github.com/acme/". */
  urlPrefix: string;
}

export interface GitCredentialHelper {
  /** Global options to put before git's subcommand: `git ...configArgs clone ...`. No secret in them. */
  readonly configArgs: readonly string[];
  /** Where the cache daemon listens, inside a private 0700 directory outside any work dir. */
  readonly socketPath: string;
  /** Stops the daemon (forgetting the credentials) and removes its directory. Safe to call twice. */
  close(): Promise<void>;
}

export interface OpenGitCredentialsOptions {
  /** The git environment (`createGitEnvironment`). */
  env: Readonly<Record<string, string>>;
  /** How long the daemon keeps the credentials if close() is never called. */
  ttlSeconds?: number;
  /** Parent of the private socket directory; defaults to the OS temp dir. */
  parentDir?: string;
}

const DAEMON_START_MS = 10_000;
const HELPER_COMMAND_MS = 10_000;

/**
 * Hands credentials to git through git's own in-memory `credential-cache` daemon. The secret
 * goes to the daemon over stdin; git asks the daemon over a unix socket in a 0700 directory.
 * The secret is therefore never in a file, an argv, an environment or the repository's
 * .git/config, and the helper is configured on the command line for URLs under the prefix
 * only, after an empty `credential.helper=` that drops any helper inherited from config.
 *
 * Keep a helper open only around the git steps that talk to the remote (clone, push): the
 * agent command runs as the same user and could ask the daemon for the secret while it lives.
 */
export async function openGitCredentials(credentials: GitCredentials, options: OpenGitCredentialsOptions): Promise<GitCredentialHelper> {
  const prefix = parsePrefix(credentials);
  const ttlSeconds = Math.max(1, Math.ceil(options.ttlSeconds ?? 3600));
  const dir = await mkdtemp(join(options.parentDir ?? tmpdir(), "corral-git-credentials-"));
  await chmod(dir, 0o700); // the daemon refuses a socket directory others can enter
  const socketPath = join(dir, "socket");
  let daemon: Daemon | undefined;
  let closing: Promise<void> | undefined;

  const close = () => {
    closing ??= (async () => {
      if (daemon) {
        await runStep({ command: ["git", "credential-cache", "--socket", socketPath, "exit"], cwd: dir, env: options.env, timeoutMs: HELPER_COMMAND_MS, graceMs: 1_000 });
        await daemon.stop();
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return closing;
  };

  try {
    daemon = await startDaemon(socketPath, dir, options.env);
    const stored = await runStep({
      command: ["git", "credential-cache", "--timeout", String(ttlSeconds), "--socket", socketPath, "store"],
      cwd: dir,
      env: options.env,
      timeoutMs: HELPER_COMMAND_MS,
      graceMs: 1_000,
      input: credentialRecord(prefix, credentials),
    });
    if (stored.outcome !== "succeeded") throw new Error(`could not store git credentials in the cache: ${stored.message}`);
  } catch (error) {
    await close();
    throw error;
  }

  const helper = `cache --timeout ${ttlSeconds} --socket ${shellQuote(socketPath)}`;
  return {
    configArgs: ["-c", "credential.helper=", "-c", `credential.${prefix.href}.helper=${helper}`],
    socketPath,
    close,
  };
}

function parsePrefix(credentials: GitCredentials): URL {
  let prefix: URL;
  try {
    prefix = new URL(credentials.urlPrefix);
  } catch {
    throw new Error(`git credentials: url prefix ${JSON.stringify(credentials.urlPrefix)} is not a URL`);
  }
  if (prefix.protocol !== "https:" && prefix.protocol !== "http:") throw new Error(`git credentials: only http(s) URL prefixes can carry credentials, not ${prefix.protocol}`);
  // `-c key=value` splits at the first "=", and the credential protocol is line based.
  if (/[=\s]/.test(prefix.href)) throw new Error(`git credentials: url prefix ${JSON.stringify(credentials.urlPrefix)} must not contain "=" or white space`);
  if (prefix.username || prefix.password) throw new Error("git credentials: the url prefix must not carry user information");
  for (const [name, value] of [["username", credentials.username], ["password", credentials.password]] as const) {
    if (/[\0\n]/.test(value)) throw new Error(`git credentials: the ${name} must not contain newlines or NUL`);
  }
  return prefix;
}

/** The git credential protocol record `store` reads from stdin. */
function credentialRecord(prefix: URL, credentials: GitCredentials): string {
  const path = decodeURIComponent(prefix.pathname).replace(/^\/+|\/+$/g, "");
  return [
    `protocol=${prefix.protocol.slice(0, -1)}`,
    `host=${prefix.host}`,
    ...(path ? [`path=${path}`] : []),
    `username=${credentials.username}`,
    `password=${credentials.password}`,
    "",
    "",
  ].join("\n");
}

interface Daemon {
  stop(): Promise<void>;
}

/**
 * Starts the daemon ourselves, in its own process group, rather than letting the first
 * `credential-cache store` fork it: that way its lifetime is ours to end, and it is not a
 * leftover of some step's process group.
 */
async function startDaemon(socketPath: string, cwd: string, env: Readonly<Record<string, string>>): Promise<Daemon> {
  const child = spawn("git", ["credential-cache--daemon", socketPath], { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const ready = await new Promise<boolean>((resolve) => {
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
      if (stdout.includes("ok\n")) resolve(true); // printed once the socket listens
    });
    void exited.then(() => resolve(false));
    setTimeout(() => resolve(false), DAEMON_START_MS).unref();
  });
  /** After an `exit` request the daemon leaves by itself; give it a moment, then kill it. */
  const stop = async (patienceMs: number) => {
    if (child.exitCode === null && child.signalCode === null) {
      const patience = new AbortController();
      await Promise.race([exited, delay(patienceMs, undefined, { signal: patience.signal }).catch(() => {})]);
      patience.abort(); // no timer left behind once the daemon is gone
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    await exited;
  };
  child.stdout.destroy();
  child.stderr.destroy();
  child.unref(); // a forgotten close() must not keep the agent alive; the ttl ends the daemon then
  if (!ready) {
    await stop(0);
    throw new Error(`git credential-cache daemon did not start${stderr ? `: ${stderr.trim()}` : ""}`);
  }
  return { stop: () => stop(2_000) };
}
