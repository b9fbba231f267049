import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { w3c } from "./trace-context.ts";

export interface TracingInterceptorOptions {
  tracer: Tracer;
  /** False installs nothing: the interceptor passes calls straight on. */
  enabled: boolean;
  side: "server" | "client";
  /** The protocol a client speaks (its transport); a server reads it from the request. */
  protocol?: "grpc" | "connect_rpc";
}

const headerGetter = {
  get: (carrier: Headers, key: string) => carrier.get(key) ?? undefined,
  keys: (carrier: Headers) => [...carrier.keys()],
};
const headerSetter = { set: (carrier: Headers, key: string, value: string) => carrier.set(key, value) };

// gRPC codes a server span counts as its own failure (the semantic conventions' list); the rest
// are the client's doing. A client span fails on any code.
const SERVER_ERRORS = new Set([Code.Unknown, Code.DeadlineExceeded, Code.Unimplemented, Code.Internal, Code.Unavailable, Code.DataLoss]);

/**
 * Server and client spans for Connect RPCs, which connect-node does not instrument: one span per
 * call named `package.Service/Method`, with rpc.system, rpc.service, rpc.method and the status
 * code, and W3C trace context (traceparent, tracestate) carried in the request headers, so a
 * server span is the child of its caller's client span. Streaming calls too: the span lasts
 * until the response stream ends, and the handler's stream body runs inside it.
 */
export function createTracingInterceptor(options: TracingInterceptorOptions): Interceptor {
  if (!options.enabled) return (next) => next;
  const { tracer, side } = options;
  return (next) => async (req) => {
    const rpcService = req.service.typeName;
    const rpcMethod = req.method.name;
    const system = options.protocol ?? (/^application\/grpc/.test(req.header.get("content-type") ?? "") ? "grpc" : "connect_rpc");
    let parent: Context;
    if (side === "server") parent = w3c.extract(context.active(), req.header, headerGetter);
    else parent = context.active();
    const span = tracer.startSpan(
      `${rpcService}/${rpcMethod}`,
      { kind: side === "server" ? SpanKind.SERVER : SpanKind.CLIENT, attributes: { "rpc.system": system, "rpc.service": rpcService, "rpc.method": rpcMethod } },
      parent,
    );
    const active = trace.setSpan(parent, span);
    if (side === "client") w3c.inject(active, req.header, headerSetter);
    let res;
    try {
      res = await context.with(active, () => next(req));
    } catch (error) {
      end(span, side, system, error);
      throw error;
    }
    if (!res.stream) {
      end(span, side, system, undefined);
      return res;
    }
    return { ...res, message: traced(res.message, active, span, (error) => end(span, side, system, error)) };
  };
}

/** The response stream, each step taken inside the call's context; `done` runs once, however it ends. */
async function* traced<T>(messages: AsyncIterable<T>, active: Context, span: Span, done: (error: unknown) => void): AsyncGenerator<T> {
  const iterator = messages[Symbol.asyncIterator]();
  let ended = false;
  try {
    for (;;) {
      const step = await context.with(active, () => iterator.next());
      if (step.done) break;
      yield step.value;
    }
    ended = true;
    done(undefined);
  } catch (error) {
    ended = true;
    done(error);
    throw error;
  } finally {
    if (!ended) {
      // The reader stopped early (the call was cancelled): let the stream clean up.
      done(new ConnectError("the stream was closed before its end", Code.Canceled));
      await iterator.return?.();
    }
  }
}

function end(span: Span, side: "server" | "client", system: string, error: unknown): void {
  const code: number = error === undefined ? 0 : ConnectError.from(error).code;
  span.setAttribute("rpc.grpc.status_code", code);
  if (code !== 0) {
    if (system === "connect_rpc") span.setAttribute("rpc.connect_rpc.error_code", codeName(code));
    if (side === "client" || SERVER_ERRORS.has(code)) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: ConnectError.from(error).rawMessage });
    }
  }
  span.end();
}

function codeName(code: number): string {
  return (Code[code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}
