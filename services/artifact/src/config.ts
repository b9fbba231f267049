import { z } from "zod";
import { duration, listenAddress, logLevel, positiveInt, postgresUrl } from "@corral/plumbing/config.ts";

const UNITS: Record<string, number> = { "": 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** A byte count, written as an integer with an optional binary unit: "1048576", "512MiB", "4GiB". */
const byteSize = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const match = /^(\d+)\s*(B|KiB|MiB|GiB|TiB)?$/.exec(value.trim());
      const bytes = match ? Number(match[1]) * UNITS[match[2] ?? ""]! : NaN;
      if (!match || !Number.isSafeInteger(bytes) || bytes <= 0) {
        ctx.addIssue({ code: "custom", message: `expected a positive byte count such as 1048576, 512MiB or 4GiB, got "${value}"` });
        return z.NEVER;
      }
      return bytes;
    });

/** Environment of the artifact service, validated once at start-up. */
export const artifactConfig = {
  CORRAL_ARTIFACT_LISTEN: listenAddress("127.0.0.1:8702"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
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
   * A following download is woken by the upload itself (same process) or by PostgreSQL NOTIFY
   * (another replica); it looks again at this pace anyway, for notifications lost on a reconnect.
   */
  CORRAL_ARTIFACT_FOLLOW_POLL: duration("5s"),
};

export type ArtifactConfig = Readonly<z.infer<z.ZodObject<typeof artifactConfig>>>;
