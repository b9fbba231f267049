import { closeSync, openSync, writeSync } from "node:fs";
import { copyFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { runStep, type OutputListener, type StepResult } from "./run-step.ts";

export interface GitOptions {
  /** Where the repository is (or will be) checked out. */
  repoDir: string;
  /** From `createGitEnvironment`. */
  env: Readonly<Record<string, string>>;
  graceMs: number;
  signal?: AbortSignal;
}

/** One git step: a budget shared by all the git processes it runs, and where their output goes. */
export interface GitCall {
  timeoutMs: number;
  onOutput?: OutputListener;
}

/** Options that reach a remote may carry a credential helper (`GitCredentialHelper.configArgs`). */
export interface RemoteCall extends GitCall {
  configArgs?: readonly string[];
}

export type GitResult<T> = { ok: true; value: T } | { ok: false; failure: StepResult };

export interface Git {
  /** Clones `url` and checks out `baseRef` (branch, tag, full ref or commit) detached; yields the base commit. */
  clone(call: RemoteCall & { url: string; baseRef: string }): Promise<GitResult<{ baseCommit: string }>>;
  /** Creates (or resets) the run branch at HEAD and switches to it. */
  createBranch(call: GitCall & { branch: string }): Promise<GitResult<void>>;
  /** Whether the working tree differs from `baseCommit`, uncommitted or committed by the agent itself. */
  hasChanges(call: GitCall & { baseCommit: string }): Promise<GitResult<boolean>>;
  /** `git add -A` and a commit by the given author and committer; `committed: false` means nothing to commit. */
  commitAll(call: GitCall & CommitIdentity): Promise<GitResult<{ sha: string; committed: boolean }>>;
  /** Paths, relative to the repository root, that HEAD adds, modifies or deletes against `baseCommit`. */
  changedFiles(call: GitCall & { baseCommit: string }): Promise<GitResult<string[]>>;
  /** Pushes HEAD to `refs/heads/<branch>` of `url`. */
  push(call: RemoteCall & { url: string; branch: string }): Promise<GitResult<void>>;
  /**
   * Writes the binary diff of the working tree (untracked files included, ignored ones not)
   * against `baseCommit` to `file`, streaming. Staging happens in a copy of the index
   * (`indexFile`), so the repository's own index is left as it was.
   */
  writeDiff(call: GitCall & { baseCommit: string; file: string; indexFile: string }): Promise<GitResult<{ bytes: number }>>;
}

export interface CommitIdentity {
  authorName: string;
  authorEmail: string;
  message: string;
}

/**
 * Settings no repository or agent may change for our own git processes: hooks and fsmonitor
 * would run code the agent planted in .git, a detached auto-gc would escape the step's process
 * group, and signing would need keys the sandbox does not have.
 */
const FIXED_CONFIG = [
  "-c", "core.hooksPath=/dev/null",
  "-c", "core.fsmonitor=false",
  "-c", "gc.auto=0",
  "-c", "maintenance.auto=false",
  "-c", "commit.gpgSign=false",
  "-c", "advice.detachedHead=false",
];

const MAX_CAPTURE_BYTES = 64 * 1024 * 1024;

/**
 * The environment of every git process: nothing of the sandbox's own configuration (system
 * config, the user's ~/.gitconfig, askpass programs, GIT_* variables) influences a run, and git
 * never waits for a terminal prompt.
 */
export function createGitEnvironment(homeDir: string, from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {
    PATH: from.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: homeDir,
    XDG_CONFIG_HOME: `${homeDir}/.config`,
    LC_ALL: "C",
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_ALLOW_PROTOCOL: "file:git:http:https:ssh",
  };
  for (const name of ["TMPDIR", "SSH_AUTH_SOCK"]) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** The git steps of a run, each a sequence of process-group steps sharing one budget. */
export function createGit(options: GitOptions): Git {
  const session = (call: GitCall) => createSession(options, call);
  return {
    async clone(call) {
      if (call.url.startsWith("-")) return failed(`invalid repository URL ${call.url}`);
      const git = session(call);
      const remote = call.configArgs ?? [];
      const cloned = await git.run(["clone", "--no-checkout", "--origin", "origin", "--", call.url, options.repoDir], { configArgs: remote, cwd: dirname(options.repoDir) });
      if (!cloned.ok) return cloned;
      const resolved = await resolveBaseRef(git, call.baseRef, remote);
      if (!resolved.ok) return resolved;
      const checkedOut = await git.run(["checkout", "--detach", resolved.value]);
      if (!checkedOut.ok) return checkedOut;
      return { ok: true, value: { baseCommit: resolved.value } };
    },

    async createBranch(call) {
      const git = session(call);
      const valid = await git.run(["check-ref-format", "--branch", call.branch], { capture: true });
      if (!valid.ok) return valid.failure.outcome === "failed" ? failed(`invalid branch name ${JSON.stringify(call.branch)}`) : valid;
      const created = await git.run(["checkout", "-B", call.branch]);
      return created.ok ? { ok: true, value: undefined } : created;
    },

    async hasChanges(call) {
      const git = session(call);
      const status = await git.run(["status", "--porcelain", "-z", "--untracked-files=normal"], { capture: true });
      if (!status.ok) return status;
      if (status.value.length > 0) return { ok: true, value: true };
      const head = await git.run(["rev-parse", "--verify", "HEAD"], { capture: true });
      if (!head.ok) return head;
      return { ok: true, value: head.value.trim() !== call.baseCommit };
    },

    async commitAll(call) {
      const git = session(call);
      const added = await git.run(["add", "--all"]);
      if (!added.ok) return added;
      const staged = await git.run(["diff", "--cached", "--quiet"], { okExitCodes: [0, 1] });
      if (!staged.ok) return staged;
      const committed = staged.exitCode === 1;
      if (committed) {
        const identity = {
          GIT_AUTHOR_NAME: call.authorName,
          GIT_AUTHOR_EMAIL: call.authorEmail,
          GIT_COMMITTER_NAME: call.authorName,
          GIT_COMMITTER_EMAIL: call.authorEmail,
        };
        const commit = await git.run(["commit", "--no-verify", "--quiet", "--message", call.message], { env: identity });
        if (!commit.ok) return commit;
      }
      const head = await git.run(["rev-parse", "--verify", "HEAD"], { capture: true });
      if (!head.ok) return head;
      return { ok: true, value: { sha: head.value.trim(), committed } };
    },

    async changedFiles(call) {
      const git = session(call);
      const diff = await git.run(["diff", "--name-only", "-z", "--no-renames", call.baseCommit, "HEAD", "--"], { capture: true });
      if (!diff.ok) return diff;
      return { ok: true, value: diff.value.split("\0").filter((path) => path.length > 0) };
    },

    async push(call) {
      if (call.url.startsWith("-")) return failed(`invalid repository URL ${call.url}`);
      const git = session(call);
      // The URL from the spec, not the "origin" remote: the agent could have rewritten .git/config.
      const pushed = await git.run(["push", "--no-verify", call.url, `HEAD:refs/heads/${call.branch}`], { configArgs: call.configArgs ?? [] });
      return pushed.ok ? { ok: true, value: undefined } : pushed;
    },

    async writeDiff(call) {
      const git = session(call);
      const index = { GIT_INDEX_FILE: call.indexFile };
      try {
        await copyFile(join(options.repoDir, ".git", "index"), call.indexFile);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") return failed(`cannot copy the index: ${(error as Error).message}`);
      }
      const added = await git.run(["add", "--all"], { env: index });
      if (!added.ok) return added;
      let fd: number;
      try {
        fd = openSync(call.file, "w", 0o600);
      } catch (error) {
        return failed(`cannot write ${call.file}: ${(error as Error).message}`);
      }
      let bytes = 0;
      try {
        const diff = await git.run(["diff", "--cached", "--binary", "--no-renames", "--no-ext-diff", "--no-textconv", call.baseCommit, "--"], {
          env: index,
          stdout: (data) => {
            for (let written = 0; written < data.length; ) written += writeSync(fd, data, written, data.length - written);
            bytes += data.length;
          },
        });
        return diff.ok ? { ok: true, value: { bytes } } : diff;
      } finally {
        closeSync(fd);
      }
    },
  };
}

async function resolveBaseRef(git: Session, baseRef: string, remote: readonly string[]): Promise<GitResult<string>> {
  if (baseRef.length === 0 || baseRef.startsWith("-")) return failed(`invalid base ref ${JSON.stringify(baseRef)}`);
  // A branch wins over a tag of the same name, as it would for someone typing `git checkout`.
  for (const candidate of [`refs/remotes/origin/${baseRef}`, `refs/tags/${baseRef}`, baseRef]) {
    const found = await git.run(["rev-parse", "--verify", "--quiet", "--end-of-options", `${candidate}^{commit}`], { capture: true, okExitCodes: [0, 1] });
    if (!found.ok) return found;
    if (found.exitCode === 0) return { ok: true, value: found.value.trim() };
  }
  // Not advertised by the clone (a commit off every branch, refs/pull/..., a tag on no branch): ask for it.
  const fetched = await git.run(["fetch", "--quiet", "origin", baseRef], { configArgs: remote });
  if (!fetched.ok) return fetched.failure.outcome === "failed" ? failed(`base ref ${JSON.stringify(baseRef)} not found in the repository`) : fetched;
  const found = await git.run(["rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}"], { capture: true });
  if (!found.ok) return found.failure.outcome === "failed" ? failed(`base ref ${JSON.stringify(baseRef)} is not a commit`) : found;
  return { ok: true, value: found.value.trim() };
}

interface RunOptions {
  configArgs?: readonly string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Keep stdout for the caller instead of passing it on. */
  capture?: boolean;
  /** Hand stdout to this instead of passing it on. */
  stdout?: (data: Uint8Array) => void;
  okExitCodes?: readonly number[];
}

type RunResult = { ok: true; value: string; exitCode: number } | { ok: false; failure: StepResult };

interface Session {
  run(args: readonly string[], run?: RunOptions): Promise<RunResult>;
}

function createSession(options: GitOptions, call: GitCall): Session {
  const deadline = performance.now() + call.timeoutMs;
  return {
    async run(args, run = {}) {
      const remaining = Math.round(deadline - performance.now());
      const what = `git ${args[0]}`;
      if (remaining <= 0) return { ok: false, failure: { outcome: "timed_out", durationMs: 0, message: `timed out after ${call.timeoutMs} ms (before ${what})` } };
      const captured: Buffer[] = [];
      let capturedBytes = 0;
      const result = await runStep({
        command: ["git", ...(run.configArgs ?? []), ...FIXED_CONFIG, ...args],
        cwd: run.cwd ?? options.repoDir,
        env: { ...options.env, ...run.env },
        timeoutMs: remaining,
        graceMs: options.graceMs,
        signal: options.signal,
        onOutput(stream, data) {
          if (stream === "stdout" && run.stdout) {
            run.stdout(data);
          } else if (stream === "stdout" && run.capture) {
            capturedBytes += data.length;
            if (capturedBytes <= MAX_CAPTURE_BYTES) captured.push(Buffer.from(data));
          } else {
            call.onOutput?.(stream, data);
          }
        },
      });
      const okExitCodes = run.okExitCodes ?? [0];
      if (result.outcome === "timed_out") return { ok: false, failure: { ...result, message: `timed out after ${call.timeoutMs} ms (in ${what})` } };
      if (result.outcome === "cancelled") return { ok: false, failure: result };
      if (result.exitCode === undefined || !okExitCodes.includes(result.exitCode)) {
        return { ok: false, failure: { ...result, outcome: "failed", message: `${what} ${result.message ?? "failed"}` } };
      }
      if (capturedBytes > MAX_CAPTURE_BYTES) return { ok: false, failure: { ...result, outcome: "failed", message: `${what} wrote more than ${MAX_CAPTURE_BYTES} bytes` } };
      return { ok: true, value: Buffer.concat(captured).toString("utf8"), exitCode: result.exitCode };
    },
  };
}

function failed(message: string): { ok: false; failure: StepResult } {
  return { ok: false, failure: { outcome: "failed", durationMs: 0, message } };
}
