import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { createGitEnvironment } from "../../../agent/src/pipeline/git.ts";

/** Temp dirs made through the returned function are removed after each test of the suite. */
export function useTempDirs(): (name?: string) => Promise<string> {
  const made: string[] = [];
  afterEach(async () => {
    await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  return async (name = "test") => {
    const dir = await mkdtemp(join(tmpdir(), `corral-${name}-`));
    made.push(dir);
    return dir;
  };
}

export const AUTHOR = { GIT_AUTHOR_NAME: "Seed Author", GIT_AUTHOR_EMAIL: "seed@example.com", GIT_COMMITTER_NAME: "Seed Author", GIT_COMMITTER_EMAIL: "seed@example.com" };

/** Runs git synchronously for test setup and inspection, free of the machine's git config. */
export function git(root: string, args: readonly string[], cwd = root): string {
  return execFileSync("git", args, { cwd, env: { ...createGitEnvironment(join(root, ".home")), ...AUTHOR }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface SeededRemote {
  /** The bare repository's directory. */
  bare: string;
  url: string;
  /** Tagged `v1` (annotated). */
  first: string;
  /** The tip of `main`. */
  second: string;
  /** A commit only `refs/hidden/extra` points at, which a clone does not fetch. */
  hidden: string;
}

/** A bare repository with two commits on `main`, a tag on the first and one unadvertised commit. */
export async function createSeededRemote(root: string, name = "remote.git"): Promise<SeededRemote> {
  const bare = join(root, name);
  const seed = join(root, "seed");
  await mkdir(join(root, ".home"), { recursive: true });
  git(root, ["init", "--quiet", "--bare", "--initial-branch=main", bare]);
  git(root, ["init", "--quiet", "--initial-branch=main", seed]);
  await writeFile(join(seed, "README.md"), "hello\n");
  await writeFile(join(seed, "doomed.txt"), "delete me\n");
  git(root, ["add", "-A"], seed);
  git(root, ["commit", "--quiet", "-m", "first"], seed);
  const first = git(root, ["rev-parse", "HEAD"], seed).trim();
  git(root, ["tag", "-a", "v1", "-m", "version 1"], seed);
  await writeFile(join(seed, "README.md"), "hello\nsecond\n");
  git(root, ["commit", "--quiet", "-am", "second"], seed);
  const second = git(root, ["rev-parse", "HEAD"], seed).trim();
  git(root, ["checkout", "--quiet", "-b", "hidden", first], seed);
  await writeFile(join(seed, "hidden.txt"), "off the branches\n");
  git(root, ["add", "-A"], seed);
  git(root, ["commit", "--quiet", "-m", "hidden"], seed);
  const hidden = git(root, ["rev-parse", "HEAD"], seed).trim();
  git(root, ["push", "--quiet", bare, "main:main", "hidden:refs/hidden/extra", "refs/tags/v1:refs/tags/v1"], seed);
  await rm(seed, { recursive: true, force: true });
  return { bare, url: `file://${bare}`, first, second, hidden };
}

/** The commit a branch of the bare remote points at, or undefined when it has no such branch. */
export function remoteBranch(root: string, bare: string, branch: string): string | undefined {
  try {
    return git(root, ["--git-dir", bare, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).trim();
  } catch {
    return undefined;
  }
}

/**
 * Waits until `kill(-pgid, 0)` fails with ESRCH. Polls because dead orphans linger as zombies
 * until init reaps them, which this sandbox's init does only every second or two.
 */
export async function waitForGroupGone(pgid: number, withinMs = 5_000): Promise<boolean> {
  return waitForEsrch(-pgid, withinMs);
}

/** Like waitForGroupGone, for one process. */
export async function waitForProcessGone(pid: number, withinMs = 5_000): Promise<boolean> {
  return waitForEsrch(pid, withinMs);
}

async function waitForEsrch(target: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      process.kill(target, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ESRCH") return true;
      throw error;
    }
    if (Date.now() > deadline) return false;
    await delay(50);
  }
}

/** Kills a group a failed test may have left behind, so one failure does not leak processes. */
export function killGroup(pgid: number | undefined): void {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** The argv and environment of every process we may read, NUL-separated as in /proc. */
export function processTexts(): string {
  const texts: string[] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    for (const file of ["cmdline", "environ"]) {
      try {
        texts.push(readFileSync(`/proc/${pid}/${file}`, "latin1"));
      } catch {
        // gone, or not ours to read
      }
    }
  }
  return texts.join("\n");
}
