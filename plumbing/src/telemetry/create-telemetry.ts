import { context, createNoopMeter, ProxyTracerProvider, type Meter, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter as OtlpGrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { defaultResource, resourceFromAttributes, type Resource } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import { instrumentPostgres } from "./instrument-postgres.ts";
import { parseKeyValues, tracesExport, type TelemetryConfig } from "./telemetry-config.ts";

export interface Telemetry {
  /** service.name of this process's spans and metrics. */
  readonly serviceName: string;
  /** Whether spans are recorded and exported; when false the tracer is a no-op. */
  readonly tracing: boolean;
  readonly tracer: Tracer;
  /** Instruments of this service; a no-op meter when metrics are off. */
  readonly meter: Meter;
  /** The Prometheus reader serving /metrics; undefined when metrics are off. */
  readonly prometheus: PrometheusExporter | undefined;
  /** Exports what is left and stops; bounded, so an unreachable collector cannot hold a shutdown. */
  shutdown(timeoutMs?: number): Promise<void>;
}

export interface TelemetryOptions {
  /** Default service.name; OTEL_SERVICE_NAME wins. */
  serviceName: string;
  config: TelemetryConfig;
  /** Collect metrics for a Prometheus /metrics endpoint. */
  metrics?: boolean;
  /** Record PostgreSQL queries (instrumentation-pg) as spans of this service. */
  postgres?: boolean;
}

let contextManagerSet = false;

/**
 * This service's tracer and meter. Each service gets its own providers rather than the
 * process-global ones, so that several services in one process (the tests' stack) still export
 * under their own service.name; the context manager (AsyncLocalStorage) is process-wide and set
 * once, the first time tracing is on. With tracing off nothing is started: the tracer is the
 * API's no-op, the RPC interceptor is not installed and no context manager is registered.
 */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  const serviceName = options.config.OTEL_SERVICE_NAME ?? options.serviceName;
  const resource = resourceOf(serviceName, options.config);
  const exportTo = tracesExport(options.config);

  let tracerProvider: TracerProvider | undefined;
  if (exportTo) {
    const exporters: SpanExporter[] = [];
    for (const name of exportTo.exporters) {
      if (name === "console") exporters.push(new ConsoleSpanExporter());
      else if (exportTo.protocol === "grpc") exporters.push(new OtlpGrpcExporter({ url: exportTo.url }));
      else if (exportTo.protocol === "http/json") exporters.push(new OtlpJsonExporter({ url: exportTo.url, headers: exportTo.headers }));
      else exporters.push(new OtlpProtoExporter({ url: exportTo.url, headers: exportTo.headers }));
    }
    tracerProvider = new TracerProvider({
      resource,
      sampler: samplerOf(options.config),
      spanProcessors: exporters.map(
        (exporter) => new BatchSpanProcessor({ exporter, scheduledDelayMillis: options.config.OTEL_BSP_SCHEDULE_DELAY }),
      ),
    });
    if (!contextManagerSet) {
      contextManagerSet = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    }
    if (options.postgres) instrumentPostgres(tracerProvider);
  }

  let meterProvider: MeterProvider | undefined;
  let prometheus: PrometheusExporter | undefined;
  if (options.metrics) {
    // The endpoint is served by the service's own HTTP server (serve-metrics.ts), not the exporter's.
    prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
    meterProvider = new MeterProvider({ resource, readers: [prometheus] });
  }

  const name = serviceName;
  return {
    serviceName,
    tracing: tracerProvider !== undefined,
    // A fresh ProxyTracerProvider has no delegate: its tracers are no-ops, whatever another
    // service in the same process registered globally.
    tracer: (tracerProvider ?? new ProxyTracerProvider()).getTracer(name),
    meter: meterProvider?.getMeter(name) ?? createNoopMeter(),
    prometheus,
    async shutdown(timeoutMs = 3000) {
      const done = Promise.allSettled([tracerProvider?.shutdown(), meterProvider?.shutdown()]);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    },
  };
}

function resourceOf(serviceName: string, config: TelemetryConfig): Resource {
  const extra = parseKeyValues(config.OTEL_RESOURCE_ATTRIBUTES);
  // OTEL_SERVICE_NAME (already in serviceName) wins over a service.name among the attributes.
  if (config.OTEL_SERVICE_NAME === undefined && extra["service.name"]) serviceName = extra["service.name"];
  return defaultResource().merge(resourceFromAttributes({ ...extra, "service.name": serviceName, "service.namespace": "corral" }));
}

function samplerOf(config: TelemetryConfig): Sampler {
  const ratio = config.OTEL_TRACES_SAMPLER_ARG ?? 1;
  switch (config.OTEL_TRACES_SAMPLER) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio);
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}
