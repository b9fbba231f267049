import { z } from "zod";
import { listenAddress, logLevel, postgresUrl } from "@corral/plumbing/config.ts";

/** Environment of the control plane, validated once at start-up. */
export const controlPlaneConfig = {
  CORRAL_CONTROL_PLANE_LISTEN: listenAddress("127.0.0.1:8701"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
};

export type ControlPlaneConfig = Readonly<z.infer<z.ZodObject<typeof controlPlaneConfig>>>;
