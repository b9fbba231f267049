import { z } from "zod";

const exporterList = z
  .string()
  .transform((value, ctx) => {
    const names = value.split(",").map((s) => s.trim()).filter(Boolean);
    const bad = names.filter((n) => !["otlp", "console", "none"].includes(n));
    if (names.length === 0 || bad.length > 0) {
      ctx.addIssue({ code: "custom", message: `expected a comma-separated list of otlp, console, none; got "${value}"` });
      return z.NEVER;
    }
    return [...new Set(names)] as ("otlp" | "console" | "none")[];
  })
  .optional();

const protocol = z.enum(["http/protobuf", "http/json", "grpc"]).optional();
const httpUrl = z.url({ protocol: /^https?$/ }).optional();

/**
 * The standard OpenTelemetry variables the services and the agent read
 * (opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables). Tracing is off
 * unless an OTLP endpoint or OTEL_TRACES_EXPORTER says where spans go. Part of every process's
 * validated configuration, so a bad value stops start-up naming the variable, and so a test
 * can give one service its own telemetry without touching process.env.
 */
export const telemetryConfig = {
  /** "true" turns tracing off whatever else is set. */
  OTEL_SDK_DISABLED: z.enum(["true", "false"]).optional(),
  /** The service's name in traces; each process has its own default (corral-scheduler, corral-agent, ...). */
  OTEL_SERVICE_NAME: z.string().min(1).optional(),
  /** Extra resource attributes, "key=value,key2=value2" (values percent-encoded). */
  OTEL_RESOURCE_ATTRIBUTES: z.string().optional(),
  /** Where spans go: otlp, console or none; unset means otlp once an endpoint is set, else none. */
  OTEL_TRACES_EXPORTER: exporterList,
  /** Base URL of an OTLP receiver, such as http://127.0.0.1:4318 (http) or http://127.0.0.1:4317 (grpc). */
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl,
  /** Full URL for traces alone (for http, including /v1/traces). */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl,
  /** http/protobuf (default), http/json or grpc. */
  OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol,
  /** "key=value,..." headers sent with every export (an API key); never logged. */
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: z.string().optional(),
  /** Sampling: parentbased_always_on (default), always_on, always_off, traceidratio, parentbased_traceidratio, parentbased_always_off. */
  OTEL_TRACES_SAMPLER: z
    .enum(["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"])
    .optional(),
  /** The ratio of the *traceidratio samplers, 0 to 1. */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).optional(),
  /** Milliseconds between two exports of finished spans (default 5000). */
  OTEL_BSP_SCHEDULE_DELAY: z.coerce.number().int().min(0).optional(),
};

export type TelemetryConfig = Readonly<Partial<z.infer<z.ZodObject<typeof telemetryConfig>>>>;

export interface TracesExport {
  exporters: ("otlp" | "console")[];
  /** Where OTLP spans are sent. */
  url: string;
  protocol: "http/protobuf" | "http/json" | "grpc";
  headers: Record<string, string>;
}

/**
 * Where this process's spans go, or undefined when tracing is off. Off unless configured: with
 * no endpoint and no OTEL_TRACES_EXPORTER nothing is started, so tracing costs nothing.
 */
export function tracesExport(config: TelemetryConfig): TracesExport | undefined {
  if (config.OTEL_SDK_DISABLED === "true") return undefined;
  const endpoint = config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? config.OTEL_EXPORTER_OTLP_ENDPOINT;
  const named = config.OTEL_TRACES_EXPORTER ?? (endpoint ? ["otlp"] : []);
  const exporters = named.includes("none") ? [] : named.filter((n) => n !== "none");
  if (exporters.length === 0) return undefined;
  const protocol = config.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? config.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf";
  let url: string;
  if (config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) url = config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  else if (config.OTEL_EXPORTER_OTLP_ENDPOINT) {
    // The spec: the signal's path is appended to the base endpoint for http, not for grpc.
    url = protocol === "grpc" ? config.OTEL_EXPORTER_OTLP_ENDPOINT : `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces`;
  } else url = protocol === "grpc" ? "http://localhost:4317" : "http://localhost:4318/v1/traces";
  return {
    exporters,
    url,
    protocol,
    headers: { ...parseKeyValues(config.OTEL_EXPORTER_OTLP_HEADERS), ...parseKeyValues(config.OTEL_EXPORTER_OTLP_TRACES_HEADERS) },
  };
}

/** "k=v,k2=v2" with percent-encoded values, as OTEL_RESOURCE_ATTRIBUTES and the header variables are written. */
export function parseKeyValues(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (text ?? "").split(",")) {
    const cut = pair.indexOf("=");
    if (cut <= 0) continue;
    const key = pair.slice(0, cut).trim();
    const raw = pair.slice(cut + 1).trim();
    let value = raw;
    try {
      value = decodeURIComponent(raw);
    } catch {
      // Not percent-encoded after all: take it as written.
    }
    if (key) out[key] = value;
  }
  return out;
}

/**
 * The OTEL_* settings a process was given, as environment variables, for the processes it
 * starts (the scheduler's agents), so that they export where it does. The service name stays
 * behind: each process names itself.
 */
export function telemetryEnv(config: TelemetryConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of Object.keys(telemetryConfig) as (keyof typeof telemetryConfig)[]) {
    if (key === "OTEL_SERVICE_NAME") continue;
    const value = config[key];
    if (value === undefined) continue;
    env[key] = Array.isArray(value) ? value.join(",") : String(value);
  }
  return env;
}
