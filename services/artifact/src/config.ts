import { z } from "zod";
import { listenAddress, logLevel, postgresUrl } from "@corral/plumbing/config.ts";

/** Environment of the artifact service, validated once at start-up. */
export const artifactConfig = {
  CORRAL_ARTIFACT_LISTEN: listenAddress("127.0.0.1:8702"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
};

export type ArtifactConfig = Readonly<z.infer<z.ZodObject<typeof artifactConfig>>>;
