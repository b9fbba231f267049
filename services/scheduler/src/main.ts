import { runServiceMain } from "@corral/plumbing/service-main.ts";
import { schedulerConfig } from "./config.ts";
import { startScheduler } from "./start-scheduler.ts";

await runServiceMain({
  name: "corral-scheduler",
  config: schedulerConfig,
  logLevel: (config) => config.CORRAL_LOG_LEVEL,
  start: startScheduler,
});
