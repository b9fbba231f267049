import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { startServer } from "@corral/plumbing/server/create-server.ts";
import { createTelemetry, type Telemetry } from "@corral/plumbing/telemetry/create-telemetry.ts";
import { createTracingInterceptor } from "@corral/plumbing/telemetry/tracing-interceptor.ts";
import { startOtlpReceiver } from "../test/support/otlp-receiver.ts";
import { percentile, type Figure } from "./stats.ts";

const RUN_ID = "5f0c6c6e-6a55-4a43-9d0e-6f1a2b3c4d5e";

/**
 * What tracing costs an RPC: sequential unary calls over one h2c connection (GetRun, a handler
 * that answers at once, so the figure is the RPC machinery's), with no tracing interceptor at
 * all, with tracing off (the interceptor as every service installs it: a pass-through), and with
 * tracing on (client and server spans, W3C headers, batched OTLP/HTTP export to a receiver in
 * this process). Off first: turning tracing on registers the process-wide context manager.
 */
export async function benchTracing(options: { calls: number }): Promise<Figure[]> {
  // No interceptor and tracing off alternate in small batches, so that drift (JIT, GC, the
  // neighbours on this machine) falls on both alike.
  const noneBench = await rpcBench(undefined);
  const offBench = await rpcBench(createTelemetry({ serviceName: "bench", config: {} }));
  const none: number[] = [];
  const off: number[] = [];
  try {
    await noneBench.run(500);
    await offBench.run(500);
    for (let done = 0; done < options.calls; done += 250) {
      none.push(...(await noneBench.run(250)));
      off.push(...(await offBench.run(250)));
    }
  } finally {
    await noneBench.close();
    await offBench.close();
  }
  const receiver = await startOtlpReceiver();
  const telemetry = createTelemetry({ serviceName: "bench", config: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url } });
  const onBench = await rpcBench(telemetry);
  let on: number[];
  try {
    await onBench.run(500);
    on = await onBench.run(options.calls);
  } finally {
    await onBench.close();
    await telemetry.shutdown();
    await receiver.close();
  }
  const figure = (name: string, values: number[], p: number): Figure => ({
    name: `unary RPC p${p}, ${name}`,
    value: percentile(values, p),
    unit: "µs",
    baseline: { name: "no interceptor", value: percentile(none, p) },
  });
  return [
    { ...figure("tracing off (interceptor a pass-through)", off, 50), target: { text: "≤ 1.05× no interceptor", met: percentile(off, 50) <= 1.05 * percentile(none, 50) } },
    figure("tracing off (interceptor a pass-through)", off, 99),
    figure("tracing on (OTLP export)", on, 50),
    figure("tracing on (OTLP export)", on, 99),
  ];
}

/** A server and a client with the telemetry's interceptors on both sides (none without telemetry); `run` times sequential calls, in µs. */
async function rpcBench(telemetry: Telemetry | undefined) {
  const interceptor = (side: "server" | "client"): Interceptor[] =>
    telemetry ? [createTracingInterceptor({ tracer: telemetry.tracer, enabled: telemetry.tracing, side, protocol: "grpc" })] : [];
  const server = await startServer({
    name: "bench",
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ name: "bench", level: "silent" }),
    services: [RunService],
    interceptors: interceptor("server"),
    routes: (router) => router.service(RunService, { getRun: () => ({ run: { id: RUN_ID } }) }),
  });
  const session = new Http2SessionManager(server.url);
  const client = createClient(RunService, createGrpcTransport({ baseUrl: server.url, sessionManager: session, interceptors: interceptor("client") }));
  return {
    async run(calls: number): Promise<number[]> {
      const latencies: number[] = [];
      for (let i = 0; i < calls; i++) {
        const started = process.hrtime.bigint();
        await client.getRun({ runId: RUN_ID });
        latencies.push(Number(process.hrtime.bigint() - started) / 1000);
      }
      return latencies;
    },
    async close(): Promise<void> {
      session.abort();
      await server.close(0);
    },
  };
}
