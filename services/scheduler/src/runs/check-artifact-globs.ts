import { submitRunLimits } from "./submit-run-limits.ts";
import { hasControlCharacter } from "./text-checks.ts";
import type { Violations } from "./violations.ts";

/**
 * Checks spec.artifact_globs. Globs are matched inside the repository; one that is absolute
 * or climbs out with ".." could upload files from elsewhere in the sandbox.
 */
export function checkArtifactGlobs(globs: readonly string[], violations: Violations): string[] {
  if (globs.length > submitRunLimits.artifactGlobs) {
    violations.add("spec.artifact_globs", `must have at most ${submitRunLimits.artifactGlobs} patterns`);
  }
  globs.forEach((glob, index) => {
    const problem = globProblem(glob);
    if (problem !== undefined) violations.add(`spec.artifact_globs[${index}]`, problem);
  });
  return [...globs];
}

function globProblem(glob: string): string | undefined {
  if (glob === "") return "must not be empty";
  if (glob.length > submitRunLimits.artifactGlobLength) return `must be at most ${submitRunLimits.artifactGlobLength} characters`;
  if (hasControlCharacter(glob)) return "must not contain control characters";
  // "\\" counts as a separator too: some glob libraries accept it, and "C:" starts a Windows path.
  if (/^[/\\]/.test(glob) || /^[A-Za-z]:/.test(glob)) return "must be relative to the repository root";
  if (glob.split(/[/\\]/).includes("..")) return "must not contain a '..' segment";
  return undefined;
}
