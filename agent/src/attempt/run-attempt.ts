import { hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Phase } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { ArtifactState, RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { CompletionOutcome } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { context, SpanStatusCode, type Span, type Tracer } from "@opentelemetry/api";
import { contextFromTraceContext, inSpan, runAttributes } from "@corral/plumbing/telemetry/trace-context.ts";
import { CancelRequest } from "../pipeline/cancel-request.ts";
import {
  LOG_STREAM_TO_PROTO,
  PHASE_TO_PROTO,
  pipelineSpecFromRunSpec,
  STATUS_TO_PROTO,
  STEP_KIND_TO_PROTO,
  STEP_OUTCOME_TO_PROTO,
} from "../pipeline/contract-mapping.ts";
import type { AgentSession, AttachedAssignment } from "../session/agent-session.ts";
import type { ArtifactsPort, AttemptArtifacts } from "./artifacts-port.ts";
import type { PipelineObserver, PipelinePort, PipelineResult, PipelineSpec } from "./pipeline-port.ts";

export interface RunAttemptOptions {
  session: AgentSession;
  /** What the session's first welcome brought. */
  attached: AttachedAssignment;
  pipeline: PipelinePort;
  /** The run log and files; without it nothing is uploaded and the completion reports no artifact state. */
  artifacts?: ArtifactsPort;
  /** The run's workspace (CORRAL_WORK_DIR). */
  workDir: string;
  agentVersion: string;
  logger: Logger;
  /**
   * Aborting it stops the attempt the way a pushed cancel does (the agent got SIGTERM): the
   * running step is stopped and the attempt completes as cancelled.
   */
  signal?: AbortSignal;
  /**
   * The attempt's span, a child of the assignment's trace context (the control plane's attach
   * span in the run's trace), with the steps, uploads and a cancellation inside; none without it.
   */
  tracer?: Tracer;
}

export interface AttemptOutcome {
  status: PipelineResult["status"];
  reason?: string;
  /** The control plane's answer to the completion. */
  completion: CompletionOutcome;
}

/**
 * One attempt, from assignment to acknowledged completion: run.started, then the pipeline with
 * its observer turned into events and the progressive run log, then (phase uploading) the
 * artifacts, then run.completion_attempted and Complete with their artifact state. A pushed
 * cancel is acknowledged with run.cancellation_observed and aborts the pipeline with the
 * cancel's grace; losing the session for good aborts it too, since nobody could be told.
 * Rejects only with the session's SessionFailure.
 */
export async function runAttempt(options: RunAttemptOptions): Promise<AttemptOutcome> {
  const { tracer } = options;
  if (!tracer) return attempt(options);
  const { assignment } = options.attached;
  const traceContext = assignment.traceContext;
  return inSpan(
    tracer,
    "corral.attempt",
    {
      parent: traceContext?.traceparent ? contextFromTraceContext(traceContext) : context.active(),
      attributes: runAttributes({ runId: assignment.runId, attempt: assignment.attempt, repositoryUrl: assignment.spec?.repositoryUrl }),
    },
    async (span) => {
      const outcome = await attempt(options);
      span.setAttribute("corral.status", outcome.status);
      if (outcome.status === "failed") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason ?? "failed" });
      return outcome;
    },
  );
}

async function attempt(options: RunAttemptOptions): Promise<AttemptOutcome> {
  const { session, attached } = options;
  const { assignment } = attached;
  const log = options.logger.child({ runId: assignment.runId, attempt: assignment.attempt });
  const controller = new AbortController();
  // From the cancel (pushed, or the agent's own SIGTERM) to the pipeline's end: how long stopping took.
  const attemptContext = context.active();
  let cancelSpan: Span | undefined;
  const stopWith = (reason: string, graceMs?: number) => {
    if (controller.signal.aborted) return;
    cancelSpan = options.tracer?.startSpan("corral.cancel", { attributes: graceMs === undefined ? {} : { "corral.cancel.grace_ms": graceMs } }, attemptContext);
    controller.abort(new CancelRequest(reason, graceMs));
  };
  let phase: Phase = Phase.UNSPECIFIED;
  const enterPhase = (next: Phase) => {
    if (next === phase) return;
    session.emit({ case: "phaseChanged", value: { phase: next, previous: phase } });
    phase = next;
  };

  session.markRunning();
  session.emit({ case: "runStarted", value: { agentVersion: options.agentVersion, protocolVersion: attached.protocolVersion, hostname: hostname() } });
  const artifacts = startArtifacts(options, log);

  let spec: PipelineSpec | undefined;
  let result: PipelineResult | undefined;
  try {
    spec = pipelineSpecFromRunSpec(assignment.spec ?? create(RunSpecSchema), assignment.runId);
  } catch (error) {
    result = { status: "failed", reason: `the assignment cannot run: ${(error as Error).message}` };
  }

  const unsubscribeCancel = session.onCancel((notice) => {
    const graceMs = notice.graceMs ?? spec?.timeouts.graceMs;
    session.emit({
      case: "cancellationObserved",
      value: { reason: notice.reason, grace: graceMs === undefined ? undefined : durationFromMs(graceMs) },
    });
    stopWith(notice.reason, notice.graceMs);
  });
  const onStopSignal = () => {
    session.emit({ case: "warning", value: { code: "agent_terminated", message: "the agent was asked to stop; cancelling the run" } });
    stopWith("the agent was asked to stop");
  };
  if (options.signal?.aborted) onStopSignal();
  else options.signal?.addEventListener("abort", onStopSignal, { once: true });
  void session.finished().then((ended) => {
    if (ended.state === "failed") stopWith(`lost the control plane: ${ended.error.message}`);
  });

  try {
    if (spec && !result) {
      result = await runPipelineSafely(options, spec, controller.signal, observerFor(session, spec, enterPhase, log, artifacts), log);
    }
  } finally {
    unsubscribeCancel();
    options.signal?.removeEventListener("abort", onStopSignal);
    cancelSpan?.setAttribute("corral.status", result?.status ?? "unknown");
    cancelSpan?.end();
  }
  const ended = result!;

  let artifactState: ArtifactState = ArtifactState.UNSPECIFIED;
  if (artifacts) {
    enterPhase(Phase.UPLOADING);
    artifactState = await artifacts.finish({ status: ended.status, ...(ended.baseCommit ? { baseCommit: ended.baseCommit } : {}) }).catch((error: unknown) => {
      log.error({ err: error }, "finishing the artifacts failed");
      return ArtifactState.FAILED;
    });
  }

  enterPhase(Phase.FINISHING);
  const status = STATUS_TO_PROTO[ended.status];
  session.emit({ case: "completionAttempted", value: { status, idempotencyKey: session.idempotencyKey } });
  log.info({ status: ended.status, reason: ended.reason }, "attempt finished; completing");
  const completion = await session.complete({
    status,
    result: ended.status === "succeeded" ? ended.result : undefined,
    reason: ended.reason ?? "",
    artifactState,
  });
  return { status: ended.status, ...(ended.reason === undefined ? {} : { reason: ended.reason }), completion };
}

async function runPipelineSafely(
  options: RunAttemptOptions,
  spec: PipelineSpec,
  signal: AbortSignal,
  observer: PipelineObserver,
  log: Logger,
): Promise<PipelineResult> {
  const credentials = options.attached.assignment.gitCredentials;
  try {
    return await options.pipeline({
      spec,
      runId: options.attached.assignment.runId,
      workDir: options.workDir,
      gitCredentials: credentials?.password ? { username: credentials.username, password: credentials.password, urlPrefix: credentials.urlPrefix } : undefined,
      signal,
      observer,
      ...(options.tracer ? { tracer: options.tracer } : {}),
    });
  } catch (error) {
    // The pipeline promises not to reject; if it does, the attempt still completes.
    log.error({ err: error }, "the pipeline crashed");
    return { status: "failed", reason: `the agent's pipeline crashed: ${(error as Error).message}` };
  }
}

/** The artifacts of the attempt, if it has any; a port that throws costs the artifacts, not the run. */
function startArtifacts(options: RunAttemptOptions, log: Logger): AttemptArtifacts | undefined {
  if (!options.artifacts) return undefined;
  try {
    return options.artifacts({ assignment: options.attached.assignment, workDir: options.workDir, emit: (payload) => void options.session.emit(payload), logger: log });
  } catch (error) {
    log.error({ err: error }, "artifacts could not be started");
    return undefined;
  }
}

/**
 * The pipeline's observer as events. Each callback is guarded: an observer must not throw.
 * Step output goes to the event stream and to the run log as the same redacted bytes, so the
 * two cannot disagree (see attempt-artifacts): the run-log artifact is the complete, durable
 * record; the log.chunk events are the live view, which sheds output when the control plane
 * falls behind and says so with a run.warning.
 */
function observerFor(session: AgentSession, spec: PipelineSpec, enterPhase: (phase: Phase) => void, log: Logger, artifacts: AttemptArtifacts | undefined): PipelineObserver {
  const validations = spec.validationSteps.length;
  let validation = 0;
  const guarded = <A extends unknown[]>(what: string, f: (...args: A) => void) => (...args: A) => {
    try {
      f(...args);
    } catch (error) {
      log.error({ err: error, what }, "turning a pipeline report into an event failed");
    }
  };
  return {
    phaseChanged: guarded("phase", (phase) => enterPhase(PHASE_TO_PROTO[phase])),
    stepStarted: guarded("step.started", (step) => {
      session.emit({ case: "stepStarted", value: { name: step.name, kind: STEP_KIND_TO_PROTO[step.kind], timeout: durationFromMs(step.timeoutMs) } });
      if (step.kind === "validation" && validation < validations) {
        validation += 1;
        session.emit({
          case: "progress",
          value: { message: `validation step ${validation} of ${validations}: ${step.name}`, percent: Math.round(((validation - 1) / validations) * 100) },
        });
      }
    }),
    stepFinished: guarded("step.finished", (step) => {
      artifacts?.stepFinished(step.name);
      session.emit({
        case: "stepFinished",
        value: {
          name: step.name,
          kind: STEP_KIND_TO_PROTO[step.kind],
          outcome: STEP_OUTCOME_TO_PROTO[step.outcome],
          exitCode: step.exitCode,
          signal: step.signal ?? "",
          duration: durationFromMs(step.durationMs),
          message: step.message ?? "",
        },
      });
    }),
    output: guarded("log.chunk", (chunk) => {
      artifacts?.output(chunk);
      session.emitLog({ step: chunk.step, stream: LOG_STREAM_TO_PROTO[chunk.stream], data: chunk.data });
    }),
  };
}
