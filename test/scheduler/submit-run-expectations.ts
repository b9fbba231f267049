import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { Runtime, type SubmitRunRequest } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { DomainError } from "@corral/plumbing/errors.ts";
import { refNameProblem } from "@corral/scheduler/runs/ref-name-problem.ts";
import { submitRunLimits } from "@corral/scheduler/runs/submit-run-limits.ts";
import type { SchedulerDefaults, ValidatedSubmission } from "@corral/scheduler/runs/validated-submission.ts";

export interface Violation {
  field: string;
  description: string;
}

/** The violations of an error, read the way a client reads them; fails on any other error. */
export function violationsOf(error: unknown): Violation[] {
  assert.ok(error instanceof DomainError, `expected a DomainError, got ${String(error)}`);
  assert.equal(error.code, Code.InvalidArgument);
  const [detail] = error.toConnectError().findDetails(FieldViolationsSchema);
  assert.ok(detail !== undefined, "no FieldViolations detail");
  assert.ok(detail.violations.length >= 1, "no violation");
  return detail.violations.map(({ field, description }) => ({ field, description }));
}

/** Every field path a violation may name, per the proto. */
export const violationField =
  /^(?:runtime|request_id|spec\.(?:repository_url|base_ref|branch|agent\.(?:command_template|prompt)|validation_steps(?:\[\d+\]\.(?:name|command|timeout))?|timeouts\.(?:run|step|clone|grace)|limits\.(?:cpu_millis|memory_bytes|pids|disk_bytes)|artifact_globs(?:\[\d+\])?|commit\.(?:author_name|author_email|message)|(?:env|labels)(?:\[".*"\])?))$/s;

const runtimeByNumber = new Map<number, string>([[Runtime.LOCAL, "local"], [Runtime.DOCKER, "docker"], [Runtime.KUBERNETES, "kubernetes"]]);
const builtInSteps = ["clone", "agent", "commit", "push"];

/** Milliseconds of a Duration, rounding up sub-millisecond remainders. */
function ms(duration: Duration): number {
  return Number(duration.seconds) * 1000 + Math.ceil(duration.nanos / 1_000_000);
}

/**
 * What every accepted submission must satisfy, checked from the request, the defaults and
 * the contract rather than from the validator's own helpers (the ref-name rules excepted,
 * which are held to git itself in ref-name-problem.test.ts).
 */
export function assertResolvedInvariants(request: SubmitRunRequest, result: ValidatedSubmission, defaults: SchedulerDefaults, runId: string): void {
  const spec = request.spec!;
  const resolved = result.spec;

  assert.equal(result.runtime, request.runtime === Runtime.UNSPECIFIED ? defaults.runtime : runtimeByNumber.get(request.runtime));
  assert.ok(defaults.enabledRuntimes.includes(result.runtime));
  assert.equal(result.requestId, request.requestId === "" ? undefined : request.requestId);
  if (result.requestId !== undefined) assert.ok([...result.requestId].length <= submitRunLimits.requestIdLength && !/\s/.test(result.requestId));

  assert.equal(resolved.repositoryUrl, spec.repositoryUrl);
  assert.doesNotMatch(resolved.repositoryUrl, /^[a-z]+:\/\/[^/@]*:[^/@]*@/, "password in an accepted URL");
  assert.doesNotMatch(resolved.repositoryUrl, /^https?:\/\/[^/]*@/, "user info in an accepted http URL");
  assert.equal(resolved.baseRef, spec.baseRef);
  assert.equal(refNameProblem(resolved.baseRef), undefined);
  assert.equal(resolved.branch, spec.branch === "" ? `corral/${runId}` : spec.branch);
  assert.equal(refNameProblem(resolved.branch), undefined);

  assert.deepEqual(resolved.agent, { commandTemplate: spec.agent!.commandTemplate, prompt: spec.agent!.prompt });
  for (const [, name] of resolved.agent.commandTemplate.matchAll(/(?<!\$)\{([A-Za-z_]\w*)\}/g)) {
    assert.ok(["prompt_file", "repo_dir", "run_id"].includes(name!), `placeholder {${name}} accepted`);
  }
  assert.ok(Buffer.byteLength(resolved.agent.prompt) <= submitRunLimits.promptBytes && !resolved.agent.prompt.includes("\0"));
  assert.notEqual(resolved.agent.prompt.trim(), "");

  const t = resolved.timeouts;
  assert.equal(t.runMs, spec.timeouts?.run ? ms(spec.timeouts.run) : defaults.timeouts.runMs);
  assert.equal(t.stepMs, spec.timeouts?.step ? ms(spec.timeouts.step) : Math.min(defaults.timeouts.stepMs, t.runMs));
  assert.equal(t.cloneMs, spec.timeouts?.clone ? ms(spec.timeouts.clone) : Math.min(defaults.timeouts.cloneMs, t.runMs));
  assert.equal(t.graceMs, spec.timeouts?.grace ? ms(spec.timeouts.grace) : defaults.timeouts.graceMs);
  for (const value of Object.values(t)) assert.ok(Number.isInteger(value) && value > 0);
  assert.ok(t.runMs <= submitRunLimits.runTimeoutMs && t.stepMs <= t.runMs && t.cloneMs <= t.runMs && t.graceMs <= submitRunLimits.graceMs);

  assert.ok(resolved.validationSteps.length <= submitRunLimits.validationSteps);
  assert.deepEqual(resolved.validationSteps.map((s) => [s.name, s.command]), spec.validationSteps.map((s) => [s.name, s.command]));
  resolved.validationSteps.forEach((step, i) => {
    const given = spec.validationSteps[i]!.timeout;
    assert.equal(step.timeoutMs, given ? ms(given) : t.stepMs);
    assert.ok(Number.isInteger(step.timeoutMs) && step.timeoutMs > 0 && step.timeoutMs <= t.runMs);
    assert.match(step.name, /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/);
    assert.ok(!builtInSteps.includes(step.name.toLowerCase()));
    assert.notEqual(step.command.trim(), "");
  });
  const names = resolved.validationSteps.map((s) => s.name.toLowerCase());
  assert.equal(new Set(names).size, names.length, "duplicate step names accepted");

  for (const key of ["cpuMillis", "memoryBytes", "pids", "diskBytes"] as const) {
    const given = Number(spec.limits?.[key] ?? 0);
    assert.equal(resolved.limits[key], given === 0 ? undefined : given);
    if (given !== 0) assert.ok(given >= submitRunLimits[key].min && given <= submitRunLimits[key].max);
  }

  assert.deepEqual(resolved.artifactGlobs, spec.artifactGlobs);
  assert.ok(resolved.artifactGlobs.length <= submitRunLimits.artifactGlobs);
  for (const glob of resolved.artifactGlobs) assert.ok(glob !== "" && !/^[/\\]/.test(glob) && !glob.split(/[/\\]/).includes(".."), glob);

  assert.equal(resolved.commit.authorName, spec.commit?.authorName || defaults.commitAuthor.name);
  assert.equal(resolved.commit.authorEmail, spec.commit?.authorEmail || defaults.commitAuthor.email);
  assert.notEqual(resolved.commit.message.trim(), "");
  if (spec.commit?.message.trim()) assert.equal(resolved.commit.message, spec.commit.message);

  assert.deepEqual(Object.entries(resolved.env), Object.entries(spec.env));
  for (const key of Object.keys(resolved.env)) assert.ok(/^[A-Za-z_]\w*$/.test(key) && !/^(CORRAL_|GIT_)/i.test(key), key);
  assert.deepEqual(Object.entries(resolved.labels), Object.entries(spec.labels));

  // Plain data: it survives JSON (the database and the assignment) unchanged.
  assert.deepEqual(JSON.parse(JSON.stringify(resolved)), resolved);
}
