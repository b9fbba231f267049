import { fromBinary, toJson } from "@bufbuild/protobuf";
import { RunEventSchema } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import type { Interceptor } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import type { AttachRequest, Hello } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { createLogger, type Logger } from "@corral/plumbing/logger.ts";
import type { PipelinePort, RunPipelineOptions, PipelineResult } from "../../agent/src/attempt/pipeline-port.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";

/** A launched run whose spec has every budget the agent needs (the scheduler resolves them before launch). */
export function seedAgentRun(sql: Sql, spec: MessageInitShape<typeof RunSpecSchema> = {}): Promise<SeededRun> {
  return seedLaunchedRun(sql, {
    spec: {
      repositoryUrl: "file:///srv/git/app.git",
      baseRef: "main",
      agent: { commandTemplate: "true", prompt: "do it" },
      timeouts: { run: durationFromMs(3_600_000), step: durationFromMs(60_000), clone: durationFromMs(60_000), grace: durationFromMs(5_000) },
      ...spec,
    } as MessageInitShape<typeof RunSpecSchema>,
  });
}

export interface StoredEvent {
  sequence: number;
  type: string;
  payload: Record<string, { [key: string]: unknown }>;
}

export async function storedEvents(sql: Sql, runId: string): Promise<StoredEvent[]> {
  const rows = await sql.all<{ sequence: string; type: string; payload: Uint8Array }>(
    "select sequence, type, payload from events where run_id = ? order by sequence",
    [runId],
  );
  // Stored as protobuf binary; the JSON form keeps these assertions readable.
  const json = (bytes: Uint8Array) => toJson(RunEventSchema, fromBinary(RunEventSchema, bytes)) as StoredEvent["payload"];
  return rows.map((row) => ({ sequence: Number(row.sequence), type: row.type, payload: json(row.payload) }));
}

export async function storedCompletions(sql: Sql, runId: string) {
  return sql.all<{ idempotency_key: string; status: string; conflict: boolean; reason: string | null; result: { commitSha?: string; branch?: string; changedFiles?: string[] } }>(
    "select idempotency_key, status, conflict, reason, result from completions where run_id = ? order by received_at",
    [runId],
  );
}

/** Logs of the agent under test: silent unless TEST_LOG_LEVEL says otherwise. */
export function testLogger(name = "agent"): Logger {
  return createLogger({ name, level: process.env.TEST_LOG_LEVEL ?? "silent", destination: process.stderr });
}

/** Backoff fast enough for tests, still exponential with jitter. */
export const FAST_RECONNECT = { initialDelayMs: 20, maxDelayMs: 300, giveUpAfterMs: 30_000 } as const;

/** Counts the Attach calls a session makes, on the real transport. */
export function countingAttachCalls(): { interceptor: Interceptor; readonly count: number } {
  let count = 0;
  return {
    interceptor: (next) => (request) => {
      if (request.method.name === "Attach") count += 1;
      return next(request);
    },
    get count() {
      return count;
    },
  };
}

/** Keeps the hellos the agent sends, as sent (its instance id and credential included). */
export function capturingHellos(): { interceptor: Interceptor; first(): Hello } {
  const hellos: Hello[] = [];
  const tap = async function* (messages: AsyncIterable<AttachRequest>) {
    for await (const message of messages) {
      if (message.message.case === "hello") hellos.push(message.message.value);
      yield message;
    }
  };
  return {
    interceptor: (next) => (request) =>
      request.method.name === "Attach" && request.stream ? next({ ...request, message: tap(request.message as AsyncIterable<AttachRequest>) } as typeof request) : next(request),
    first() {
      if (!hellos[0]) throw new Error("the agent has sent no hello");
      return hellos[0];
    },
  };
}

/** Resolves after `ms`, or when `until()` holds, polling. */
export async function waitFor(until: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await until())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface FakePipelineControl {
  /** The options the agent called the pipeline with, once it has. */
  readonly calls: RunPipelineOptions[];
  /** Resolves when the pipeline has been called. */
  started: Promise<RunPipelineOptions>;
}

/**
 * A fake pipeline executor for session tests: reports through the real observer whatever
 * `script` does, and returns its result. The real executor runs git and processes; these
 * tests are about the stream, so a fake drives it deterministically.
 */
export function createFakePipeline(script: (options: RunPipelineOptions) => Promise<PipelineResult>): PipelinePort & FakePipelineControl {
  const calls: RunPipelineOptions[] = [];
  const started = Promise.withResolvers<RunPipelineOptions>();
  const fake = async (options: RunPipelineOptions) => {
    calls.push(options);
    started.resolve(options);
    return script(options);
  };
  return Object.assign(fake, { calls, started: started.promise });
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}
