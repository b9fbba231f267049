import { runServiceMain } from "@corral/plumbing/service-main.ts";
import { webConfig } from "./config.ts";
import { startWeb } from "./start-web.ts";

await runServiceMain({
  name: "corral-web",
  config: webConfig,
  logLevel: (config) => config.CORRAL_LOG_LEVEL,
  start: startWeb,
});
