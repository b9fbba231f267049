import { context, trace, type Span, type Tracer } from "@opentelemetry/api";
import { contextFromTraceContext, runAttributes, traceContextOf, type TraceContext } from "@corral/plumbing/telemetry/trace-context.ts";
import type { AttemptRecord } from "../attach/attempt-store.ts";

export interface AttachSpan {
  /** Handed to the agent in its assignment: the agent's spans are this span's children. */
  readonly traceContext: TraceContext | undefined;
  end(attributes?: Record<string, string | number>): void;
}

/**
 * The attach of an agent in its run's trace: a child of the run's SubmitRun span, linked to the
 * Attach call's own span (which is in the agent's trace, as the call was made before the agent
 * knew its run's). Undefined when tracing is off or the run was not traced.
 */
export function startAttachSpan(tracer: Tracer | undefined, record: AttemptRecord, epoch: bigint): AttachSpan | undefined {
  if (!tracer || !record.traceParent) return undefined;
  const call = trace.getActiveSpan()?.spanContext();
  const parent = contextFromTraceContext({ traceparent: record.traceParent, tracestate: record.traceState });
  const span: Span = tracer.startSpan(
    "corral.attach",
    {
      attributes: {
        ...runAttributes({ runId: record.runId, attempt: record.attempt, runtime: record.runtime, repositoryUrl: record.repositoryUrl }),
        "corral.lease_epoch": epoch.toString(),
      },
      links: call ? [{ context: call }] : [],
    },
    parent,
  );
  return {
    traceContext: traceContextOf(trace.setSpan(context.active(), span)),
    end(attributes) {
      if (attributes) span.setAttributes(attributes);
      span.end();
    },
  };
}
