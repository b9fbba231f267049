import { context, ROOT_CONTEXT, SpanStatusCode, trace, type Attributes, type Context, type Span, type SpanOptions, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

/** W3C trace context: the `traceparent` and `tracestate` header values. */
export interface TraceContext {
  traceparent: string;
  tracestate: string;
}

export const w3c = new W3CTraceContextPropagator();

const objectGetter = {
  get: (carrier: Record<string, string>, key: string) => carrier[key] || undefined,
  keys: (carrier: Record<string, string>) => Object.keys(carrier),
};
const objectSetter = { set: (carrier: Record<string, string>, key: string, value: string) => void (carrier[key] = value) };

/** The W3C form of a context's span, to store or send; undefined when it holds no sampled-or-not valid span. */
export function traceContextOf(ctx: Context): TraceContext | undefined {
  const carrier: Record<string, string> = {};
  w3c.inject(ctx, carrier, objectSetter);
  return carrier.traceparent ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate ?? "" } : undefined;
}

/** A context whose parent is the remote span a stored or received trace context names; the root context otherwise. */
export function contextFromTraceContext(traceContext: { traceparent?: string | null; tracestate?: string | null } | undefined | null): Context {
  if (!traceContext?.traceparent) return ROOT_CONTEXT;
  return w3c.extract(ROOT_CONTEXT, { traceparent: traceContext.traceparent, tracestate: traceContext.tracestate ?? "" }, objectGetter);
}

export interface RunIdentity {
  runId: string;
  attempt?: number;
  runtime?: string;
  repositoryUrl?: string;
}

/** The attributes that identify a run on every span about it. Never a credential: see `safeRepository`. */
export function runAttributes(run: RunIdentity): Attributes {
  const attributes: Attributes = { "corral.run_id": run.runId };
  if (run.attempt !== undefined && run.attempt > 0) attributes["corral.attempt"] = run.attempt;
  if (run.runtime) attributes["corral.runtime"] = run.runtime;
  if (run.repositoryUrl) attributes["corral.repository"] = safeRepository(run.repositoryUrl);
  return attributes;
}

/**
 * A repository URL fit for a span or a metric label: without user, password or token
 * (`https://x:TOKEN@host/...`), query or fragment. An scp-like `user@host:path` loses its user.
 */
export function safeRepository(url: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    try {
      const parsed = new URL(url);
      parsed.username = "";
      parsed.password = "";
      parsed.search = "";
      parsed.hash = "";
      return parsed.toString();
    } catch {
      // Not a URL after all: cut as below.
    }
  }
  // scp-like `[user[:password]@]host:path`, or anything else: everything up to the last @ before a / goes.
  return url.replace(/^[^/]*@/, "").replace(/[?#].*$/, "");
}

/**
 * Runs `work` in a new span (made active), parented to `parent` (default: the active context);
 * the span ends when the work settles, with an error status and the exception if it throws.
 */
export async function inSpan<T>(tracer: Tracer, name: string, options: SpanOptions & { parent?: Context }, work: (span: Span) => Promise<T> | T): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer.startSpan(name, options, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span));
  } catch (error) {
    failSpan(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Marks a span failed with the error's name and message (never its details, which may hold request data). */
export function failSpan(span: Span, error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error));
  span.recordException({ name: e.name, message: e.message });
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}
