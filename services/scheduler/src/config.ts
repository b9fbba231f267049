import { z } from "zod";
import { listenAddress, logLevel, postgresUrl } from "@corral/plumbing/config.ts";

/** Environment of the scheduler, validated once at start-up. */
export const schedulerConfig = {
  CORRAL_SCHEDULER_LISTEN: listenAddress("127.0.0.1:8700"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
};

export type SchedulerConfig = Readonly<z.infer<z.ZodObject<typeof schedulerConfig>>>;
