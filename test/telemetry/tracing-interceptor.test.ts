import assert from "node:assert/strict";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { context, createTraceState, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { startServer, type RunningServer } from "@corral/plumbing/server/create-server.ts";
import { createTracingInterceptor } from "@corral/plumbing/telemetry/tracing-interceptor.ts";

function provider() {
  const exporter = new InMemorySpanExporter();
  return { exporter, provider: new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }) };
}

const RUN_ID = "5f0c6c6e-6a55-4a43-9d0e-6f1a2b3c4d5e";
const spanIdOf = () => trace.getActiveSpan()?.spanContext().spanId;

describe("tracing interceptor (Connect, both sides)", () => {
  const server = provider();
  const client = provider();
  let running: RunningServer;
  // What the handlers saw: the active span and the trace headers, per call.
  const seen: { method: string; activeSpanId: string | undefined; traceparent: string | null; tracestate: string | null }[] = [];

  before(async () => {
    // A process with tracing on has this context manager (createTelemetry sets it once).
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    running = await startServer({
      name: "test",
      host: "127.0.0.1",
      port: 0,
      logger: createLogger({ name: "test", level: "silent" }),
      services: [RunService],
      interceptors: [createTracingInterceptor({ tracer: server.provider.getTracer("server"), enabled: true, side: "server" })],
      routes: (router) =>
        router.service(RunService, {
          async getRun(request, ctx) {
            seen.push({ method: "GetRun", activeSpanId: spanIdOf(), traceparent: ctx.requestHeader.get("traceparent"), tracestate: ctx.requestHeader.get("tracestate") });
            if (request.runId !== RUN_ID) throw new ConnectError("run not found", Code.NotFound);
            return { run: { id: RUN_ID } };
          },
          async *watchRun(_request, ctx) {
            for (let i = 0; i < 3; i++) {
              await new Promise((resolve) => setTimeout(resolve, 20));
              seen.push({ method: "WatchRun", activeSpanId: spanIdOf(), traceparent: ctx.requestHeader.get("traceparent"), tracestate: null });
              yield { update: { case: "run", value: { id: RUN_ID } } };
            }
          },
        }),
    });
  });
  after(() => running?.close(0));
  beforeEach(() => {
    seen.length = 0;
    server.exporter.reset();
    client.exporter.reset();
  });

  const clientWith = (interceptor: Interceptor) => createClient(RunService, createGrpcTransport({ baseUrl: running.url, interceptors: [interceptor] }));
  const traced = () => clientWith(createTracingInterceptor({ tracer: client.provider.getTracer("client"), enabled: true, side: "client", protocol: "grpc" }));
  const only = (spans: ReadableSpan[]) => {
    assert.equal(spans.length, 1, spans.map((s) => s.name).join(", "));
    return spans[0]!;
  };

  it("makes a client and a server span per unary call, the server's a child of the client's, with rpc attributes", async () => {
    await traced().getRun({ runId: RUN_ID });
    const c = only(client.exporter.getFinishedSpans());
    const s = only(server.exporter.getFinishedSpans());
    assert.equal(c.name, "corral.scheduler.v1.RunService/GetRun");
    assert.equal(s.name, "corral.scheduler.v1.RunService/GetRun");
    assert.equal(c.kind, 2 /* CLIENT */);
    assert.equal(s.kind, 1 /* SERVER */);
    assert.equal(s.spanContext().traceId, c.spanContext().traceId);
    assert.equal(s.parentSpanContext?.spanId, c.spanContext().spanId);
    assert.equal(c.parentSpanContext, undefined, "a call with no active span starts a trace");
    for (const span of [c, s]) {
      assert.deepEqual(
        { system: span.attributes["rpc.system"], service: span.attributes["rpc.service"], method: span.attributes["rpc.method"], code: span.attributes["rpc.grpc.status_code"] },
        { system: "grpc", service: "corral.scheduler.v1.RunService", method: "GetRun", code: 0 },
      );
    }
    // The handler ran inside the server span, and got W3C trace context in its headers.
    assert.equal(seen[0]!.activeSpanId, s.spanContext().spanId);
    assert.match(seen[0]!.traceparent!, new RegExp(`^00-${c.spanContext().traceId}-${c.spanContext().spanId}-01$`));
  });

  it("carries the caller's active span and tracestate", async () => {
    const parent = trace.wrapSpanContext({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED, traceState: createTraceState("corral=t61rcWkgMzE") });
    await context.with(trace.setSpan(ROOT_CONTEXT, parent), () => traced().getRun({ runId: RUN_ID }));
    const c = only(client.exporter.getFinishedSpans());
    const s = only(server.exporter.getFinishedSpans());
    assert.equal(c.spanContext().traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.equal(c.parentSpanContext?.spanId, "00f067aa0ba902b7");
    assert.equal(s.parentSpanContext?.spanId, c.spanContext().spanId);
    assert.equal(seen[0]!.tracestate, "corral=t61rcWkgMzE");
  });

  it("records the status code: a NOT_FOUND fails the client's span but not the server's", async () => {
    await assert.rejects(traced().getRun({ runId: "00000000-0000-4000-8000-000000000000" }), (error: unknown) => ConnectError.from(error).code === Code.NotFound);
    const c = only(client.exporter.getFinishedSpans());
    const s = only(server.exporter.getFinishedSpans());
    assert.equal(c.attributes["rpc.grpc.status_code"], Code.NotFound);
    assert.equal(s.attributes["rpc.grpc.status_code"], Code.NotFound);
    assert.equal(c.status.code, 2 /* ERROR */);
    assert.equal(s.status.code, 0 /* UNSET: the caller's mistake, not the server's failure */);
  });

  it("keeps a stream's span open until the stream ends, and runs the stream's body inside it", async () => {
    const received: number[] = [];
    for await (const _message of traced().watchRun({ runId: RUN_ID })) received.push(Date.now());
    assert.equal(received.length, 3);
    const c = only(client.exporter.getFinishedSpans());
    const s = only(server.exporter.getFinishedSpans());
    assert.equal(s.parentSpanContext?.spanId, c.spanContext().spanId);
    assert.deepEqual(seen.map((x) => x.activeSpanId), [s.spanContext().spanId, s.spanContext().spanId, s.spanContext().spanId], "every step of the stream ran in the server span");
    const endMs = (span: ReadableSpan) => span.endTime[0] * 1000 + span.endTime[1] / 1e6;
    const startMs = (span: ReadableSpan) => span.startTime[0] * 1000 + span.startTime[1] / 1e6;
    assert.ok(endMs(s) - startMs(s) >= 50, `the server span lasts the stream (${endMs(s) - startMs(s)} ms)`);
    assert.ok(endMs(c) >= received.at(-1)! - 1, "the client span ends after the last message");
  });

  it("ends a stream's spans when the caller stops reading early", async () => {
    const abort = new AbortController();
    for await (const _message of traced().watchRun({ runId: RUN_ID }, { signal: abort.signal })) {
      abort.abort();
      break;
    }
    const c = only(client.exporter.getFinishedSpans());
    assert.equal(c.attributes["rpc.grpc.status_code"], Code.Canceled);
    // The server learns of the cancel when its next write fails.
    for (let i = 0; i < 50 && server.exporter.getFinishedSpans().length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(only(server.exporter.getFinishedSpans()).name, "corral.scheduler.v1.RunService/WatchRun");
  });

  it("is a no-op when tracing is off: next is returned as is, no header is sent, no span is made", async () => {
    const off = createTracingInterceptor({ tracer: client.provider.getTracer("client"), enabled: false, side: "client" });
    const next = async () => ({}) as never;
    assert.equal(off(next), next);
    await clientWith(off).getRun({ runId: RUN_ID });
    assert.equal(seen[0]!.traceparent, null);
    assert.equal(client.exporter.getFinishedSpans().length, 0);
    // The server still traces (it is on there): a root span, as no context came.
    assert.equal(only(server.exporter.getFinishedSpans()).parentSpanContext, undefined);
  });
});
