import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { inSpan } from "@corral/plumbing/telemetry/trace-context.ts";
import { describeAbortReason } from "./cancel-request.ts";
import { prepareAgentCommand } from "./command-template.ts";
import { openGitCredentials, type GitCredentials } from "./git-credentials.ts";
import { createGit, createGitEnvironment, type GitResult } from "./git.ts";
import { createSecretRedactor, type SecretRedactor } from "./redact-secrets.ts";
import { runStep, type OutputListener, type OutputStream, type StepOutcome } from "./run-step.ts";

/** Phases this module goes through; `corral.common.v1.Phase` minus uploading and finishing, which belong to the session. */
export type PipelinePhase = "preparing" | "cloning" | "agent" | "validating" | "committing" | "pushing";
/** `corral.common.v1.StepKind`. */
export type PipelineStepKind = "clone" | "agent" | "validation" | "commit" | "push";
/** `corral.common.v1.StepOutcome`. */
export type PipelineStepOutcome = StepOutcome | "skipped";

/** A resolved `RunSpec` (see `pipelineSpecFromRunSpec`): every default filled in, durations in ms. */
export interface PipelineSpec {
  repositoryUrl: string;
  baseRef: string;
  /** The branch to create and push, already defaulted to "corral/<run id>". */
  branch: string;
  agent: { commandTemplate: string; prompt: string };
  /** Without a timeout a validation step gets `timeouts.stepMs`. */
  validationSteps: readonly { name: string; command: string; timeoutMs?: number }[];
  timeouts: { stepMs: number; cloneMs: number; graceMs: number };
  commit: { authorName: string; authorEmail: string; message: string };
  /** Extra environment of the agent command and the validation steps (never of git). */
  env: Readonly<Record<string, string>>;
}

export interface StepStartedEvent {
  name: string;
  kind: PipelineStepKind;
  timeoutMs: number;
}

export interface StepFinishedEvent {
  name: string;
  kind: PipelineStepKind;
  outcome: PipelineStepOutcome;
  exitCode?: number;
  signal?: string;
  durationMs: number;
  message?: string;
}

export interface OutputEvent {
  step: string;
  stream: OutputStream;
  data: Uint8Array;
}

/** Where the pipeline reports what happens; a session turns these into RunEvents. Must not throw. */
export interface PipelineObserver {
  phaseChanged(phase: PipelinePhase): void;
  stepStarted(step: StepStartedEvent): void;
  stepFinished(step: StepFinishedEvent): void;
  output(chunk: OutputEvent): void;
}

export interface RunPipelineOptions {
  spec: PipelineSpec;
  runId: string;
  /** The run's workspace; see `workspaceLayout` for what goes where. */
  workDir: string;
  /** From the assignment; offered to git only while cloning and pushing. */
  gitCredentials?: GitCredentials;
  /** Aborting it cancels the run; a `CancelRequest` reason carries the cancel's grace. */
  signal: AbortSignal;
  observer: PipelineObserver;
  /**
   * Base environment of the agent command and the validation steps, under `spec.env`.
   * Defaults to a few harmless variables of this process, so the agent's own secrets (its
   * attach credential) never reach a step.
   */
  stepEnv?: Readonly<Record<string, string>>;
  /** A span per step (clone, agent, each validation, commit, push) under the active one; none without it. */
  tracer?: Tracer;
}

export interface PipelineResult {
  status: "succeeded" | "failed" | "cancelled";
  /** Why it failed or was cancelled, for people. */
  reason?: string;
  /** `corral.common.v1.RunResult`, when the branch was pushed. */
  result?: { commitSha: string; branch: string; changedFiles: string[] };
  /** The commit the run started from, once the clone got that far (the change's diff is against it). */
  baseCommit?: string;
}

/** Where a run's files live. The prompt and git's HOME sit beside the repository, so neither is committed. */
export function workspaceLayout(workDir: string): { repoDir: string; promptFile: string; gitHome: string } {
  return { repoDir: join(workDir, "repo"), promptFile: join(workDir, "prompt.txt"), gitHome: join(workDir, "git-home") };
}

const INHERITED_STEP_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ"];

interface PlannedStep {
  name: string;
  kind: PipelineStepKind;
  phase: PipelinePhase;
  timeoutMs: number;
  run(onOutput: OutputListener): Promise<StepReport>;
}

interface StepReport {
  outcome: StepOutcome;
  exitCode?: number;
  signal?: string;
  message?: string;
  /** The run's reason when this step ends it, if better than the generic one. */
  reason?: string;
}

const NO_CHANGES = "the agent made no changes";

/**
 * Clone → agent command → validation steps → commit → push, each step a process group with
 * its own budget. The first step that does not succeed ends the run and the rest are reported
 * skipped. Never rejects for anything a run can do wrong; the result says what happened.
 */
export async function runPipeline(options: RunPipelineOptions): Promise<PipelineResult> {
  const { spec, signal, observer } = options;
  const { repoDir, promptFile, gitHome } = workspaceLayout(options.workDir);
  const graceMs = spec.timeouts.graceMs;
  const gitEnv = createGitEnvironment(gitHome);
  const git = createGit({ repoDir, env: gitEnv, graceMs, signal });
  const stepEnv = { ...(options.stepEnv ?? inheritedStepEnv()), ...spec.env };
  const secrets = secretsOf(options.gitCredentials);
  let agentCommand = "";
  let baseCommit = "";
  let commitSha = "";
  let changedFiles: string[] = [];

  /** Credentials live (in the cache daemon) only for the duration of one remote git step. */
  const withCredentials = async <T>(timeoutMs: number, use: (configArgs: readonly string[]) => Promise<GitResult<T>>): Promise<GitResult<T>> => {
    const credentials = options.gitCredentials;
    if (!credentials?.password) return use([]); // the assignment's way of saying "none needed"
    let helper;
    try {
      helper = await openGitCredentials(credentials, { env: gitEnv, ttlSeconds: timeoutMs / 1000 + 60 });
    } catch (error) {
      return { ok: false, failure: { outcome: "failed", durationMs: 0, message: (error as Error).message } };
    }
    try {
      return await use(helper.configArgs);
    } finally {
      await helper.close();
    }
  };

  const steps: PlannedStep[] = [
    {
      name: "clone", kind: "clone", phase: "cloning", timeoutMs: spec.timeouts.cloneMs,
      async run(onOutput) {
        const started = performance.now();
        const cloned = await withCredentials(spec.timeouts.cloneMs, (configArgs) =>
          git.clone({ url: spec.repositoryUrl, baseRef: spec.baseRef, configArgs, timeoutMs: spec.timeouts.cloneMs, onOutput }));
        if (!cloned.ok) return cloned.failure;
        baseCommit = cloned.value.baseCommit;
        const remainingMs = Math.max(1, spec.timeouts.cloneMs - (performance.now() - started));
        const branched = await git.createBranch({ branch: spec.branch, timeoutMs: remainingMs, onOutput });
        return branched.ok ? { outcome: "succeeded" } : branched.failure;
      },
    },
    {
      name: "agent", kind: "agent", phase: "agent", timeoutMs: spec.timeouts.stepMs,
      async run(onOutput) {
        const ran = await runStep({ command: agentCommand, cwd: repoDir, env: stepEnv, timeoutMs: spec.timeouts.stepMs, graceMs, signal, onOutput });
        if (ran.outcome !== "succeeded") return ran;
        // Checked now rather than at commit time, so a do-nothing agent does not cost the validation steps.
        const changed = await git.hasChanges({ baseCommit, timeoutMs: spec.timeouts.stepMs, onOutput });
        if (!changed.ok) return changed.failure;
        return changed.value ? ran : { ...ran, outcome: "failed", message: NO_CHANGES, reason: NO_CHANGES };
      },
    },
    ...spec.validationSteps.map((validation): PlannedStep => {
      const timeoutMs = validation.timeoutMs ?? spec.timeouts.stepMs;
      return {
        name: validation.name, kind: "validation", phase: "validating", timeoutMs,
        run: (onOutput) => runStep({ command: validation.command, cwd: repoDir, env: stepEnv, timeoutMs, graceMs, signal, onOutput }),
      };
    }),
    {
      name: "commit", kind: "commit", phase: "committing", timeoutMs: spec.timeouts.stepMs,
      async run(onOutput) {
        const call = { timeoutMs: spec.timeouts.stepMs, onOutput };
        const committed = await git.commitAll({ ...call, ...spec.commit });
        if (!committed.ok) return committed.failure;
        if (committed.value.sha === baseCommit) {
          return { outcome: "failed", message: "nothing to commit: the working tree matches the base commit after validation" };
        }
        commitSha = committed.value.sha;
        const files = await git.changedFiles({ ...call, baseCommit });
        if (!files.ok) return files.failure;
        changedFiles = files.value;
        return { outcome: "succeeded" };
      },
    },
    {
      name: "push", kind: "push", phase: "pushing", timeoutMs: spec.timeouts.cloneMs,
      async run(onOutput) {
        const pushed = await withCredentials(spec.timeouts.cloneMs, (configArgs) =>
          git.push({ url: spec.repositoryUrl, branch: spec.branch, configArgs, timeoutMs: spec.timeouts.cloneMs, onOutput }));
        return pushed.ok ? { outcome: "succeeded" } : pushed.failure;
      },
    },
  ];

  const skipFrom = (index: number, message: string) => {
    for (const step of steps.slice(index)) {
      observer.stepFinished({ name: step.name, kind: step.kind, outcome: "skipped", durationMs: 0, message });
    }
  };

  observer.phaseChanged("preparing");
  let phase: PipelinePhase = "preparing";
  const prepared = await prepare();
  if (prepared) {
    skipFrom(0, prepared);
    return { status: "failed", reason: prepared };
  }

  for (const [index, step] of steps.entries()) {
    if (signal.aborted) {
      skipFrom(index, "the run was cancelled");
      return withBase({ status: "cancelled", reason: withAbortReason(`cancelled before step "${step.name}"`, signal) });
    }
    if (step.phase !== phase) observer.phaseChanged((phase = step.phase));
    observer.stepStarted({ name: step.name, kind: step.kind, timeoutMs: step.timeoutMs });
    const started = performance.now();
    const output = redactedOutput(step.name);
    const report = options.tracer ? await tracedStep(options.tracer, step, output.write) : await step.run(output.write);
    output.end();
    const finished: StepFinishedEvent = { name: step.name, kind: step.kind, outcome: report.outcome, durationMs: Math.round(performance.now() - started) };
    if (report.exitCode !== undefined) finished.exitCode = report.exitCode;
    if (report.signal !== undefined) finished.signal = report.signal;
    if (report.message !== undefined) finished.message = report.message;
    observer.stepFinished(finished);
    if (report.outcome === "succeeded") continue;

    const label = step.kind === "validation" ? `validation step "${step.name}"` : `step "${step.name}"`;
    if (report.outcome === "cancelled") {
      skipFrom(index + 1, "the run was cancelled");
      return withBase({ status: "cancelled", reason: withAbortReason(`cancelled during ${label}`, signal) });
    }
    skipFrom(index + 1, `${label} did not succeed`);
    const reason = report.outcome === "timed_out"
      ? `${label} timed out after ${step.timeoutMs} ms`
      : report.reason ?? `${label} failed: ${report.message ?? "unknown error"}`;
    return withBase({ status: "failed", reason });
  }
  return withBase({ status: "succeeded", result: { commitSha, branch: spec.branch, changedFiles } });

  function withBase(result: PipelineResult): PipelineResult {
    return baseCommit ? { ...result, baseCommit } : result;
  }

  /** Everything that can go wrong before the first process runs; returns why it failed, if it did. */
  async function prepare(): Promise<string | undefined> {
    const names = steps.map((step) => step.name);
    const duplicate = names.find((name, index) => names.indexOf(name) !== index);
    if (duplicate !== undefined) return `step name "${duplicate}" is used twice; validation steps need unique names other than clone, agent, commit and push`;
    try {
      await mkdir(gitHome, { recursive: true, mode: 0o700 });
      agentCommand = await prepareAgentCommand({ template: spec.agent.commandTemplate, prompt: spec.agent.prompt, promptFile, repoDir, runId: options.runId });
    } catch (error) {
      return `could not prepare the workspace: ${(error as Error).message}`;
    }
    return undefined;
  }

  /** Output of one step with the git token cut out; `end` releases what was held back at a chunk's edge. */
  function redactedOutput(step: string): { write: OutputListener; end(): void } {
    const redactors = new Map<OutputStream, SecretRedactor>();
    const emit = (stream: OutputStream, data: Uint8Array) => {
      if (data.length > 0) observer.output({ step, stream, data });
    };
    return {
      write(stream, data) {
        if (secrets.length === 0) return emit(stream, data);
        let redactor = redactors.get(stream);
        if (!redactor) redactors.set(stream, (redactor = createSecretRedactor(secrets)));
        emit(stream, redactor.write(data));
      },
      end() {
        for (const [stream, redactor] of redactors) emit(stream, redactor.end());
      },
    };
  }
}

/** One step in its span: kind, name, outcome and exit code, never its command or output. */
function tracedStep(tracer: Tracer, step: PlannedStep, onOutput: OutputListener): Promise<StepReport> {
  return inSpan(
    tracer,
    `corral.step.${step.kind}`,
    { attributes: { "corral.step.name": step.name, "corral.step.kind": step.kind, "corral.step.timeout_ms": step.timeoutMs } },
    async (span) => {
      const report = await step.run(onOutput);
      span.setAttribute("corral.step.outcome", report.outcome);
      if (report.exitCode !== undefined) span.setAttribute("corral.step.exit_code", report.exitCode);
      if (report.signal !== undefined) span.setAttribute("corral.step.signal", report.signal);
      if (report.outcome !== "succeeded" && report.outcome !== "cancelled") span.setStatus({ code: SpanStatusCode.ERROR, message: report.outcome });
      return report;
    },
  );
}

function inheritedStepEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED_STEP_ENV) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** The token as git or a tool might print it: raw, URL-encoded, or inside a basic-auth header. */
function secretsOf(credentials: GitCredentials | undefined): string[] {
  if (!credentials?.password) return [];
  return [
    credentials.password,
    encodeURIComponent(credentials.password),
    Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64"),
  ];
}

function withAbortReason(text: string, signal: AbortSignal): string {
  const reason = describeAbortReason(signal.reason);
  return reason ? `${text}: ${reason}` : text;
}
