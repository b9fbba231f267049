import { runServiceMain } from "@corral/plumbing/service-main.ts";
import { controlPlaneConfig } from "./config.ts";
import { startControlPlane } from "./start-control-plane.ts";

await runServiceMain({
  name: "corral-control-plane",
  config: controlPlaneConfig,
  logLevel: (config) => config.CORRAL_LOG_LEVEL,
  start: startControlPlane,
});
