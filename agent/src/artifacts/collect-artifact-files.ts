import { glob, lstat, realpath } from "node:fs/promises";
import { sep } from "node:path";

export interface ArtifactFile {
  /** Path relative to the repository root, with "/" separators. */
  relative: string;
  /** Absolute path, inside the repository. */
  path: string;
  size: number;
}

export interface CollectedFiles {
  files: ArtifactFile[];
  /** Matches that are not uploaded, and why. */
  skipped: { relative: string; reason: string }[];
  /** Patterns that matched nothing. */
  unmatched: string[];
}

/**
 * Files of the repository matching the run spec's artifact globs (node:fs `glob`, relative to
 * the repository root; `**` does not enter dot-directories). Only regular files whose real path
 * is inside the repository are taken: the repository is the coding agent's work, and a symbolic
 * link (of the file, or of a directory on the way) could otherwise upload anything the sandbox
 * can read, such as the agent's credential. `.git` is never searched. Each file is listed once
 * however many patterns match it, in pattern order; at most `maxFiles` are taken.
 */
export async function collectArtifactFiles(repoDir: string, patterns: readonly string[], options: { maxFiles?: number } = {}): Promise<CollectedFiles> {
  const maxFiles = options.maxFiles ?? 500;
  const root = await realpath(repoDir);
  const seen = new Set<string>();
  const collected: CollectedFiles = { files: [], skipped: [], unmatched: [] };
  for (const pattern of patterns) {
    let matched = false;
    const matches: string[] = [];
    for await (const match of glob(pattern, { cwd: root, exclude: (path) => String(path).split(sep).includes(".git") })) matches.push(String(match));
    for (const match of matches.sort()) {
      const relative = match.split(sep).join("/");
      if (relative.split("/").includes("..")) continue; // glob never yields these; a pattern could
      const path = `${root}${sep}${match}`;
      const info = await lstat(path).catch(() => undefined);
      if (!info || info.isDirectory()) continue; // gone meanwhile, or a directory: not a file to upload
      matched = true;
      if (seen.has(relative)) continue;
      seen.add(relative);
      if (info.isSymbolicLink()) {
        collected.skipped.push({ relative, reason: "a symbolic link; links are not followed" });
        continue;
      }
      if (!info.isFile()) {
        collected.skipped.push({ relative, reason: "not a regular file" });
        continue;
      }
      const real = await realpath(path).catch(() => undefined);
      if (real === undefined || !real.startsWith(`${root}${sep}`)) {
        collected.skipped.push({ relative, reason: "outside the repository (through a symbolic link)" });
        continue;
      }
      if (collected.files.length >= maxFiles) {
        collected.skipped.push({ relative, reason: `more than ${maxFiles} files matched` });
        continue;
      }
      collected.files.push({ relative, path, size: info.size });
    }
    if (!matched) collected.unmatched.push(pattern);
  }
  return collected;
}
