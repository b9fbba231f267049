import { z } from "zod";
import { byteSize, duration, listenAddress, logLevel, positiveInt, postgresUrl } from "@corral/plumbing/config.ts";
import { metricsListen } from "@corral/plumbing/telemetry/serve-metrics.ts";
import { telemetryConfig } from "@corral/plumbing/telemetry/telemetry-config.ts";

/**
 * How long a finished run keeps its artifacts: a duration with a unit, days included ("30d",
 * "12h", "90m"), or "0" / "off" to keep them forever (0 in the parsed config).
 */
const retentionAge = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const text = value.trim().toLowerCase();
      if (text === "0" || text === "off") return 0;
      const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
      const ms = match ? Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as "ms"] : NaN;
      if (!match || !Number.isSafeInteger(ms) || ms <= 0) {
        ctx.addIssue({ code: "custom", message: `expected a duration such as 30d, 12h or 90m, or "off" (or 0) to keep artifacts forever; got "${value}"` });
        return z.NEVER;
      }
      return ms;
    });

/** Environment of the artifact service, validated once at start-up. */
export const artifactConfig = {
  CORRAL_ARTIFACT_LISTEN: listenAddress("127.0.0.1:8702"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
  /** Prometheus /metrics (HTTP/1.1) as host:port, or "off" (default; `corral up` uses 127.0.0.1:9702). */
  CORRAL_ARTIFACT_METRICS_LISTEN: metricsListen(),
  /** Tracing (OTLP). */
  ...telemetryConfig,
  /** Root of the filesystem blob store: blobs by digest, partial uploads by upload id. */
  CORRAL_ARTIFACT_DIR: z.string().default(".corral/artifacts"),
  /** Largest single artifact. */
  CORRAL_ARTIFACT_MAX_BYTES: byteSize("1GiB"),
  /** Bytes of all artifacts of one run together, unfinished ones counted by what they committed. */
  CORRAL_RUN_QUOTA_BYTES: byteSize("4GiB"),
  /** Artifacts of one run, unfinished ones included. */
  CORRAL_RUN_QUOTA_COUNT: positiveInt(1000),
  /**
   * Bearer token of the scheduler (and other Corral services) for any run's artifacts; unset
   * means only attempt credentials are accepted. Long enough that guessing it is out of reach.
   */
  CORRAL_ARTIFACT_SERVICE_TOKEN: z.string().min(32, "must be at least 32 characters").optional(),
  /**
   * Calls one attempt credential may make a minute (all at once at most); more are refused with
   * RESOURCE_EXHAUSTED and a retry hint. The service token is not limited.
   */
  CORRAL_ARTIFACT_CALLS_PER_MINUTE: positiveInt(6000),
  /**
   * A following download is woken by the upload itself (same process) or by PostgreSQL NOTIFY
   * (another replica); it looks again at this pace anyway, for notifications lost on a reconnect.
   */
  CORRAL_ARTIFACT_FOLLOW_POLL: duration("5s"),
  /**
   * Artifacts of a run are deleted this long after the run finished (runs.finished_at); blobs no
   * artifact points at any more go with them. 0 ("off") keeps every run's artifacts.
   */
  CORRAL_ARTIFACT_RETENTION: retentionAge("30d"),
  /** Pause between two retention sweeps; the first runs at start-up. */
  CORRAL_ARTIFACT_SWEEP_INTERVAL: duration("1h").refine((ms) => ms > 0, "must be more than 0"),
};

export type ArtifactConfig = Readonly<z.infer<z.ZodObject<typeof artifactConfig>>>;
