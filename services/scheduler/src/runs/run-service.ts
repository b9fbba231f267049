import { randomUUID } from "node:crypto";
import type { ServiceImpl } from "@connectrpc/connect";
import type { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createViolations } from "@corral/plumbing/errors.ts";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { context, trace, type Tracer } from "@opentelemetry/api";
import { contextFromTraceContext, runAttributes, traceContextOf } from "@corral/plumbing/telemetry/trace-context.ts";
import type { RuntimeStatus } from "../runtime/runtime-status.ts";
import type { SchedulerMetrics } from "../telemetry/scheduler-metrics.ts";
import { resolvedSpecJson } from "./resolved-spec-json.ts";
import type { RunNotifier } from "./run-notifier.ts";
import { runStatusName, runtimeName, toRunMessage, type RunRow } from "./run-row.ts";
import type { ListCursor, RunStore } from "./run-store.ts";
import { validateSubmitRun } from "./validate-submit-run.ts";
import type { SchedulerDefaults } from "./validated-submission.ts";
import { watchRun } from "./watch-run.ts";

export interface RunServiceDeps {
  store: RunStore;
  notifier: RunNotifier;
  defaults: SchedulerDefaults;
  runtimeStatus: RuntimeStatus;
  /** Spans about a run that a call adds to the run's trace (a cancel request); a no-op tracer without tracing. */
  tracer?: Tracer;
  metrics?: SchedulerMetrics;
}

/** corral.scheduler.v1.RunService: validation and translation only; the work is in the store. */
export function createRunService({ store, notifier, defaults, runtimeStatus, tracer, metrics }: RunServiceDeps): ServiceImpl<typeof RunService> {
  return {
    async submitRun(request) {
      const id = randomUUID();
      const submission = validateSubmitRun(request, defaults, id);
      // The run's trace is this call's: its span (the RPC's, made by the tracing interceptor) is
      // stored with the run, and the run's later work, in any process, joins it.
      trace.getActiveSpan()?.setAttributes(runAttributes({ runId: id, runtime: submission.runtime, repositoryUrl: submission.spec.repositoryUrl }));
      const traceContext = traceContextOf(context.active());
      const row = await store.insert({
        id,
        runtime: submission.runtime,
        repositoryUrl: submission.spec.repositoryUrl,
        baseRef: submission.spec.baseRef,
        spec: resolvedSpecJson(submission.spec),
        requestId: submission.requestId,
        traceContext,
      });
      return { run: toRunMessage(row) };
    },

    async getRun(request) {
      return { run: toRunMessage(await store.get(request.runId)) };
    },

    async listRuns(request) {
      const violations = createViolations();
      if (request.pageSize > 500) violations.add("page_size", "must be at most 500");
      const statuses: string[] = [];
      request.statuses.forEach((status, i) => {
        const name = status === RunStatus.UNSPECIFIED ? "unspecified" : runStatusName(status);
        if (name === undefined) violations.add(`statuses[${i}]`, `unknown run status ${status}`);
        else statuses.push(name);
      });
      const runtime = request.runtime === 0 ? undefined : runtimeName(request.runtime);
      if (request.runtime !== 0 && runtime === undefined) violations.add("runtime", `unknown runtime ${request.runtime}`);
      const cursor = request.pageToken ? decodePageToken(request.pageToken) : undefined;
      if (cursor === null) violations.add("page_token", "not a token this server issued");
      violations.throwIfAny();

      const pageSize = request.pageSize || 50;
      const rows = await store.list({ statuses, repositoryUrl: request.repositoryUrl || undefined, runtime }, pageSize + 1, cursor ?? undefined);
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        runs: page.map(toRunMessage),
        nextPageToken: rows.length > pageSize && last ? encodePageToken({ createdAt: last.created_at, id: last.id }) : "",
      };
    },

    async cancelRun(request) {
      const violations = createViolations();
      const graceMs = request.grace ? durationMs(request.grace) : undefined;
      if (graceMs !== undefined && (graceMs < 0 || graceMs > 300_000)) violations.add("grace", "must be between 0s and 5m");
      if (request.reason.length > 1000) violations.add("reason", "must be at most 1000 characters");
      violations.throwIfAny();
      const row = await store.requestCancel(request.runId, request.reason, graceMs, (cancelled) => metrics?.runFinished("cancelled", cancelled.runtime));
      notifier.notify(row.id);
      if (tracer) markInRunTrace(tracer, row, "corral.cancel_requested", { "corral.cancel.grace_ms": graceMs ?? -1 });
      return { run: toRunMessage(row) };
    },

    async retryRun(request) {
      const row = await store.retry(request.runId);
      notifier.notify(row.id);
      return { run: toRunMessage(row) };
    },

    watchRun(request, context) {
      return watchRun(store, notifier, request, context.signal);
    },

    async listRuntimes(_request, context) {
      return { runtimes: await runtimeStatus.list(context.signal) };
    },
  };
}

/**
 * A point in the run's own trace for something a later call did to it (a cancel request), linked
 * to that call's span: the call has its own trace, the run's trace shows when it happened.
 */
function markInRunTrace(tracer: Tracer, row: RunRow, name: string, attributes: Record<string, number | string>): void {
  if (!row.trace_parent) return;
  const caller = trace.getActiveSpan()?.spanContext();
  const span = tracer.startSpan(
    name,
    {
      attributes: { ...runAttributes({ runId: row.id, attempt: row.current_attempt, runtime: row.runtime, repositoryUrl: row.repository_url }), ...attributes },
      links: caller ? [{ context: caller }] : [],
    },
    contextFromTraceContext({ traceparent: row.trace_parent, tracestate: row.trace_state }),
  );
  span.end();
}

const durationMs = (d: Duration) => Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);

function encodePageToken(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt, cursor.id])).toString("base64url");
}

/** null when the token is not one of ours. */
function decodePageToken(token: string): ListCursor | null {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as unknown[];
    if (typeof createdAt !== "string" || typeof id !== "string" || !/^[0-9a-f-]{36}$/i.test(id) || Number.isNaN(Date.parse(createdAt))) return null;
    return { createdAt, id };
  } catch {
    return null;
  }
}
