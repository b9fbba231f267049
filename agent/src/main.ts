import { closeSync, readFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { context } from "@opentelemetry/api";
import { ConfigError } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createTelemetry } from "@corral/plumbing/telemetry/create-telemetry.ts";
import { contextFromTraceContext } from "@corral/plumbing/telemetry/trace-context.ts";
import { createTracingInterceptor } from "@corral/plumbing/telemetry/tracing-interceptor.ts";
import { attemptArtifacts } from "./artifacts/attempt-artifacts.ts";
import { EXIT, runAgent } from "./attempt/run-agent.ts";
import { isStandby, loadAgentConfig, loadStandbyConfig, readCredential, readStandbyAssignment, type AgentConfig } from "./config.ts";
import { runPipeline } from "./pipeline/run-pipeline.ts";

// The runner agent's process: configuration from the environment, the credential from stdin
// (or CORRAL_CREDENTIAL_FILE), structured logs on stderr, and an exit code that tells the
// runtime whether the control plane has the attempt's completion (0) or not.

const NAME = "corral-agent";
const AGENT_VERSION = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

/**
 * Standby mode: by now every module is loaded (the static imports above), which is most of an
 * agent's start-up. Validate what the environment holds, say "ready", wait for the assignment,
 * then carry on exactly as a cold agent whose environment had held it.
 */
async function standBy(): Promise<{ config: AgentConfig; credential: string }> {
  const known = loadStandbyConfig();
  if (known.CORRAL_AGENT_READY_FD !== undefined) {
    try {
      writeSync(known.CORRAL_AGENT_READY_FD, "ready\n");
      closeSync(known.CORRAL_AGENT_READY_FD);
    } catch {
      // The runtime stopped listening; the end of stdin will tell us whether it is gone.
    }
  }
  const { credential, ...assignment } = await readStandbyAssignment();
  try {
    // The runtime started us before the work dir existed; a cold agent is started inside it.
    process.chdir(assignment.workDir);
  } catch (error) {
    throw new ConfigError([{ variable: "assignment.workDir", message: `cannot enter ${assignment.workDir}: ${(error as NodeJS.ErrnoException).code ?? error}` }]);
  }
  const { CORRAL_AGENT_READY_FD, ...rest } = known;
  const config = Object.freeze({
    ...rest,
    CORRAL_CONTROL_PLANE_URL: assignment.controlPlaneUrl,
    CORRAL_RUN_ID: assignment.runId,
    CORRAL_ATTEMPT: assignment.attempt,
    CORRAL_WORK_DIR: assignment.workDir,
    TRACEPARENT: assignment.traceparent,
    TRACESTATE: assignment.tracestate,
  });
  return { config, credential };
}

let config: AgentConfig;
let credential: string;
try {
  if (isStandby()) ({ config, credential } = await standBy());
  else {
    config = loadAgentConfig();
    credential = await readCredential({ file: config.CORRAL_CREDENTIAL_FILE });
  }
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${NAME}: ${error.message}\n`);
  process.exit(EXIT.config);
}

// stderr is synchronous for files and pipes on Linux, so nothing is lost at process.exit.
const logger = createLogger({ name: NAME, level: config.CORRAL_LOG_LEVEL, destination: process.stderr });
// Spans of the attempt (steps, uploads, cancellation) join the run's trace through the
// assignment; calls made before it (attach) join it through the launch's TRACEPARENT, if given.
const telemetry = createTelemetry({ serviceName: NAME, config });
const tracer = telemetry.tracing ? telemetry.tracer : undefined;
const tracing = createTracingInterceptor({ tracer: telemetry.tracer, enabled: telemetry.tracing, side: "client", protocol: "grpc" });
const launchContext = contextFromTraceContext({ traceparent: config.TRACEPARENT, tracestate: config.TRACESTATE });

// The first SIGTERM/SIGINT cancels the attempt, which then completes as cancelled; a second
// one exits at once (the runtime escalates to SIGKILL anyway).
const stop = new AbortController();
const onSignal = (signal: NodeJS.Signals) => {
  if (stop.signal.aborted) {
    logger.warn({ signal }, "second signal; exiting now");
    process.exit(EXIT.failed);
  }
  logger.info({ signal }, "asked to stop; cancelling the attempt");
  stop.abort(signal);
};
process.on("SIGTERM", onSignal);
process.on("SIGINT", onSignal);

const ownWorkDir = config.CORRAL_WORK_DIR === undefined;
const workDir = config.CORRAL_WORK_DIR ?? (await mkdtemp(join(tmpdir(), "corral-agent-")));
logger.info({ controlPlane: config.CORRAL_CONTROL_PLANE_URL, runId: config.CORRAL_RUN_ID, attempt: config.CORRAL_ATTEMPT, workDir, version: AGENT_VERSION }, "agent starting");

const exit = await context.with(launchContext, () => runAgent({
  controlPlaneUrl: config.CORRAL_CONTROL_PLANE_URL,
  runId: config.CORRAL_RUN_ID,
  attempt: config.CORRAL_ATTEMPT,
  credential,
  agentVersion: AGENT_VERSION,
  workDir,
  logger,
  pipeline: runPipeline,
  artifacts: attemptArtifacts({
    credential,
    flushIntervalMs: config.CORRAL_RUN_LOG_FLUSH_INTERVAL,
    uploadBudgetMs: config.CORRAL_ARTIFACT_UPLOAD_BUDGET,
    cancelBudgetMs: config.CORRAL_ARTIFACT_CANCEL_BUDGET,
    interceptors: [tracing],
    tracer,
  }),
  interceptors: [tracing],
  tracer,
  signal: stop.signal,
  reconnect: {
    initialDelayMs: config.CORRAL_RECONNECT_INITIAL_DELAY,
    maxDelayMs: config.CORRAL_RECONNECT_MAX_DELAY,
    giveUpAfterMs: config.CORRAL_RECONNECT_GIVE_UP,
  },
}));

if (ownWorkDir) await rm(workDir, { recursive: true, force: true }).catch((error: unknown) => logger.warn({ err: error, workDir }, "could not remove the work dir"));
if (exit.exitCode === EXIT.ok) logger.info({ exitCode: exit.exitCode }, exit.message);
else {
  logger.error({ exitCode: exit.exitCode, kind: exit.failure?.kind }, exit.message);
  process.stderr.write(`${NAME}: ${exit.message}\n`);
}
// The attempt's spans go out before the process ends (bounded: a collector that is down must
// not hold the exit). Exit explicitly: a step's leftover handle must not keep a finished agent alive.
await telemetry.shutdown(2000);
process.exit(exit.exitCode);
