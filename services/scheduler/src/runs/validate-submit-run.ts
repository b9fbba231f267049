import type { SubmitRunRequest } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createViolations } from "@corral/plumbing/errors.ts";
import { checkAgent } from "./check-agent.ts";
import { checkArtifactGlobs } from "./check-artifact-globs.ts";
import { checkCommit } from "./check-commit.ts";
import { checkEnv } from "./check-env.ts";
import { checkLabels } from "./check-labels.ts";
import { checkLimits } from "./check-limits.ts";
import { checkRequestId } from "./check-request-id.ts";
import { checkRuntime } from "./check-runtime.ts";
import { checkTimeouts } from "./check-timeouts.ts";
import { checkValidationSteps } from "./check-validation-steps.ts";
import { refNameProblem } from "./ref-name-problem.ts";
import { repositoryUrlProblem } from "./repository-url-problem.ts";
import type { SchedulerDefaults, ValidatedSubmission } from "./validated-submission.ts";
import type { Violations } from "./violations.ts";

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Validates a SubmitRunRequest completely and resolves every default.
 *
 * Throws one INVALID_ARGUMENT DomainError whose FieldViolations name every bad field by its
 * proto path (spec.validation_steps[1].command), so a client fixes everything in one go.
 *
 * `runId` is the id the caller will store the run under; it is taken here so the default
 * branch, "corral/<run id>", is resolved like every other default and the stored spec is
 * complete. Minting it before validating costs nothing, and on a request_id replay it is
 * simply not used. A runId that is not a uuid is a caller bug and throws a TypeError.
 */
export function validateSubmitRun(request: SubmitRunRequest, defaults: SchedulerDefaults, runId: string): ValidatedSubmission {
  if (!uuid.test(runId)) throw new TypeError("validateSubmitRun needs the run's uuid");
  const violations = createViolations();
  const spec = request.spec;

  const runtime = checkRuntime(request.runtime, defaults, violations);
  const requestId = checkRequestId(request.requestId, violations);

  const repositoryUrl = spec?.repositoryUrl ?? "";
  const urlProblem = repositoryUrlProblem(repositoryUrl);
  if (urlProblem !== undefined) violations.add("spec.repository_url", urlProblem);

  const baseRef = spec?.baseRef ?? "";
  checkBaseRef(baseRef, violations);
  const branch = checkBranch(spec?.branch ?? "", violations) ?? `corral/${runId.toLowerCase()}`;

  const agent = checkAgent(spec?.agent, violations);
  const { resolved: timeouts, runBoundMs } = checkTimeouts(spec?.timeouts, defaults.timeouts, violations);
  const validationSteps = checkValidationSteps(spec?.validationSteps ?? [], { stepMs: timeouts.stepMs, runBoundMs }, violations);
  const limits = checkLimits(spec?.limits, violations);
  const artifactGlobs = checkArtifactGlobs(spec?.artifactGlobs ?? [], violations);
  const commit = checkCommit(spec?.commit, agent.prompt, defaults.commitAuthor, violations);
  const env = checkEnv(spec?.env ?? {}, violations);
  const labels = checkLabels(spec?.labels ?? {}, violations);

  violations.throwIfAny();
  return {
    runtime,
    requestId,
    spec: { repositoryUrl, baseRef, branch, agent, validationSteps, timeouts, limits, artifactGlobs, commit, env, labels },
  };
}

function checkBaseRef(baseRef: string, violations: Violations): void {
  if (baseRef === "") return violations.add("spec.base_ref", "is required");
  // A full 40- or 64-digit commit id passes the ref-name rules too, so one check covers both.
  const problem = refNameProblem(baseRef);
  if (problem !== undefined) violations.add("spec.base_ref", `must be a branch, tag or full commit id: ${problem}`);
}

/** The branch the client chose, or undefined for the default. */
function checkBranch(branch: string, violations: Violations): string | undefined {
  if (branch === "") return undefined;
  // git refuses to create a branch called HEAD; better to hear it now than after the agent ran.
  const problem = branch === "HEAD" ? "must not be HEAD" : refNameProblem(branch);
  if (problem !== undefined) violations.add("spec.branch", problem);
  return branch;
}
