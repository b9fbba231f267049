import { z } from "zod";
import { duration, listenAddress, logLevel, positiveInt, postgresUrl } from "@corral/plumbing/config.ts";
import { metricsListen } from "@corral/plumbing/telemetry/serve-metrics.ts";
import { telemetryConfig } from "@corral/plumbing/telemetry/telemetry-config.ts";

/** Environment of the control plane, validated once at start-up. */
export const controlPlaneConfig = {
  CORRAL_CONTROL_PLANE_LISTEN: listenAddress("127.0.0.1:8701"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
  /** Prometheus /metrics (HTTP/1.1) as host:port, or "off" (default; `corral up` uses 127.0.0.1:9701). */
  CORRAL_CONTROL_PLANE_METRICS_LISTEN: metricsListen(),
  /** Tracing (OTLP). */
  ...telemetryConfig,
  /** Given to agents in the assignment, so they know where to upload. */
  CORRAL_ARTIFACT_URL: z.url().default("http://127.0.0.1:8702"),
  /** How often both sides send heartbeats on an attached stream. */
  CORRAL_HEARTBEAT_INTERVAL: duration("5s"),
  /** How long a lease lives without a heartbeat or event; then the attempt counts as lost. */
  CORRAL_LEASE_DURATION: duration("30s"),
  /** How long a new stream may stay silent before its hello; then it is ended DEADLINE_EXCEEDED. */
  CORRAL_HELLO_TIMEOUT: duration("10s"),
  /** Largest message either side of a stream may send. */
  CORRAL_MAX_MESSAGE_BYTES: positiveInt(4 * 1024 * 1024),
  /** Largest serialized event. */
  CORRAL_MAX_EVENT_PAYLOAD_BYTES: positiveInt(256 * 1024),
  /** Sustained events per second and burst, per stream. */
  CORRAL_MAX_EVENTS_PER_SECOND: positiveInt(2000),
  CORRAL_MAX_EVENTS_BURST: positiveInt(20_000),
  /**
   * Attach attempts one credential may make a minute (all at once at most); more are refused
   * with RESOURCE_EXHAUSTED and a retry hint, before the credential is looked up.
   */
  CORRAL_ATTACH_ATTEMPTS_PER_MINUTE: positiveInt(60),
  /** Git credentials handed to agents whose repository URL starts with the prefix. */
  CORRAL_GIT_URL_PREFIX: z.string().optional(),
  CORRAL_GIT_USERNAME: z.string().default("x-access-token"),
  CORRAL_GIT_TOKEN: z.string().optional(),
};

export type ControlPlaneConfig = Readonly<z.infer<z.ZodObject<typeof controlPlaneConfig>>>;
