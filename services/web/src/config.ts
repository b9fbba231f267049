import { z } from "zod";
import { listenAddress, logLevel } from "@corral/plumbing/config.ts";

/** Environment of the web service (the dashboard), validated once at start-up. */
export const webConfig = {
  /** HTTP/1.1 port of the dashboard: the UI and the Connect protocol, which browsers speak. */
  CORRAL_WEB_LISTEN: listenAddress("127.0.0.1:8703"),
  CORRAL_LOG_LEVEL: logLevel,
  /** The scheduler whose RunService the dashboard forwards. */
  CORRAL_SCHEDULER_URL: z.url().default("http://127.0.0.1:8700"),
  /** The artifact service whose reads (Download, Stat, List) the dashboard forwards. */
  CORRAL_ARTIFACT_URL: z.url().default("http://127.0.0.1:8702"),
  /**
   * The artifact service's service token, sent with every forwarded artifact read; browsers
   * never see it. Unset: the dashboard shows runs, but no logs or artifacts.
   */
  CORRAL_ARTIFACT_SERVICE_TOKEN: z.string().min(32, "must be at least 32 characters").optional(),
};

export type WebConfig = Readonly<z.infer<z.ZodObject<typeof webConfig>>>;
