import { context, isSpanContextValid, trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Paths pino blanks in every record. Credentials and tokens must never reach a log: this
 * list is tested, and new secret-bearing fields belong here.
 */
export const REDACTED_PATHS = [
  "credential",
  "*.credential",
  "token",
  "*.token",
  "password",
  "*.password",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "gitCredentials",
  "*.gitCredentials",
  "git_credentials",
  "*.git_credentials",
  "databaseUrl",
  "*.databaseUrl",
  // HTTP and gRPC metadata: bearer tokens, cookies, API keys of an OTLP collector.
  "headers.cookie",
  "*.headers.authorization",
  "*.headers.cookie",
  "metadata.authorization",
  "*.metadata.authorization",
  "apiKey",
  "*.apiKey",
  "secret",
  "*.secret",
  "accessToken",
  "*.accessToken",
  "refreshToken",
  "*.refreshToken",
  // Git credentials as the control plane and the agent name them.
  "gitToken",
  "*.gitToken",
  "gitCredentials.password",
  "*.gitCredentials.password",
  // Configuration objects logged whole: the variables that hold secrets.
  "DATABASE_URL",
  "*.DATABASE_URL",
  "CORRAL_GIT_TOKEN",
  "*.CORRAL_GIT_TOKEN",
  "CORRAL_ARTIFACT_SERVICE_TOKEN",
  "*.CORRAL_ARTIFACT_SERVICE_TOKEN",
  "OTEL_EXPORTER_OTLP_HEADERS",
  "*.OTEL_EXPORTER_OTLP_HEADERS",
  "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
  "*.OTEL_EXPORTER_OTLP_TRACES_HEADERS",
  // A run spec's environment may hold the agent's API keys.
  "spec.env",
  "*.spec.env",
];

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Where records go; standard output when omitted. Tests pass a stream to inspect. */
  destination?: pino.DestinationStream;
}

/**
 * The active span's ids on every record, so a log line leads to its trace (and back). Without
 * tracing there is no context manager and no span: this costs a map lookup.
 */
function traceIds(): { trace_id?: string; span_id?: string } {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const ids = span.spanContext();
  return isSpanContextValid(ids) ? { trace_id: ids.traceId, span_id: ids.spanId } : {};
}

/** Structured JSON logs with secrets redacted and the active span's trace and span ids. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? "info",
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      mixin: traceIds,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
