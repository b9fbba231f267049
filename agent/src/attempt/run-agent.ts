import { join } from "node:path";
import type { Interceptor } from "@connectrpc/connect";
import type { Tracer } from "@opentelemetry/api";
import { CompletionOutcome } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { createAgentSession, type AgentSessionOptions } from "../session/agent-session.ts";
import { SessionFailure } from "../session/session-failure.ts";
import type { ArtifactsPort } from "./artifacts-port.ts";
import type { PipelinePort } from "./pipeline-port.ts";
import { runAttempt, type AttemptOutcome } from "./run-attempt.ts";

/** Exit codes of the agent process. */
export const EXIT = {
  /** The completion was acknowledged (recorded or refused as a conflict), whatever the run's status. */
  ok: 0,
  /** The session ended for good without an acknowledged completion. */
  failed: 1,
  /** Bad configuration or credential source; nothing was attempted. */
  config: 2,
} as const;

export interface RunAgentOptions {
  controlPlaneUrl: string;
  runId: string;
  attempt: number;
  /** Never logged. */
  credential: string;
  agentVersion: string;
  workDir: string;
  logger: Logger;
  pipeline: PipelinePort;
  /** Uploads the run log and files; see run-attempt. */
  artifacts?: ArtifactsPort;
  /**
   * Asks the agent to stop (SIGTERM): the attempt is cancelled and completes as cancelled.
   * Before the assignment arrives, the session just ends.
   */
  signal?: AbortSignal;
  /** After a stop request, how long the attempt may take to complete before the session is cut. */
  stopTimeoutMs?: number;
  reconnect?: AgentSessionOptions["reconnect"];
  outbox?: AgentSessionOptions["outbox"];
  welcomeTimeoutMs?: number;
  interceptors?: Interceptor[];
  /** Spans of the attempt, in the run's trace (see run-attempt); none without it. */
  tracer?: Tracer;
}

export interface AgentExit {
  exitCode: number;
  /** For people: what happened, one line. */
  message: string;
  outcome?: AttemptOutcome;
  failure?: SessionFailure;
}

/** The agent's life: attach, run the one attempt, complete it, close. Resolves with the exit code; never rejects. */
export async function runAgent(options: RunAgentOptions): Promise<AgentExit> {
  const session = createAgentSession({
    controlPlaneUrl: options.controlPlaneUrl,
    runId: options.runId,
    attempt: options.attempt,
    credential: options.credential,
    agentVersion: options.agentVersion,
    logger: options.logger,
    reconnect: options.reconnect,
    // Output that does not fit in memory during a control-plane outage waits on disk, beside the workspace.
    outbox: { spillFile: join(options.workDir, "outbox.spill"), ...options.outbox },
    welcomeTimeoutMs: options.welcomeTimeoutMs,
    interceptors: options.interceptors,
  });
  let stopTimer: NodeJS.Timeout | undefined;
  const onStop = () => {
    if (session.state === "starting") session.abort("the agent was asked to stop before it was attached");
    // The attempt is being cancelled through options.signal; this bounds how long that may take.
    else stopTimer = setTimeout(() => session.abort("the attempt did not complete in time after the agent was asked to stop"), options.stopTimeoutMs ?? 60_000);
  };
  if (options.signal?.aborted) onStop();
  else options.signal?.addEventListener("abort", onStop, { once: true });

  try {
    const attached = await session.start();
    const outcome = await runAttempt({
      session,
      attached,
      pipeline: options.pipeline,
      artifacts: options.artifacts,
      workDir: options.workDir,
      agentVersion: options.agentVersion,
      logger: options.logger,
      signal: options.signal,
      tracer: options.tracer,
    });
    const ended = await session.finished();
    // The control plane has the completion, which is what the exit code reports; events
    // still unacknowledged when the stream failed for good are the only loss.
    if (ended.state === "failed") options.logger.warn({ kind: ended.error.kind }, `completion acknowledged, but the session then failed: ${ended.error.message}`);
    const verdict = outcome.completion === CompletionOutcome.RECORDED ? "recorded" : "refused as a conflict";
    return { exitCode: EXIT.ok, message: `run ${outcome.status}; completion ${verdict}`, outcome };
  } catch (error) {
    const failure = error instanceof SessionFailure ? error : new SessionFailure("protocol", `agent error: ${(error as Error).message}`);
    if (!(error instanceof SessionFailure)) options.logger.error({ err: error }, "agent error");
    session.abort(failure.message);
    return { exitCode: EXIT.failed, message: failure.message, failure };
  } finally {
    clearTimeout(stopTimer);
    options.signal?.removeEventListener("abort", onStop);
    await session.closed();
  }
}
