import { runServiceMain } from "@corral/plumbing/service-main.ts";
import { artifactConfig } from "./config.ts";
import { startArtifact } from "./start-artifact.ts";

await runServiceMain({
  name: "corral-artifact",
  config: artifactConfig,
  logLevel: (config) => config.CORRAL_LOG_LEVEL,
  start: startArtifact,
});
