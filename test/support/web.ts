import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { webConfig } from "@corral/web/config.ts";
import { startWeb, type WebServer } from "@corral/web/start-web.ts";

/** The real web service (the dashboard) on a free port, in front of the given scheduler and artifact service. */
export async function startWebFixture(env: { schedulerUrl: string; artifactUrl: string; token?: string; listen?: string }): Promise<WebServer> {
  const config = loadConfig(webConfig, {
    CORRAL_WEB_LISTEN: env.listen ?? "127.0.0.1:0",
    CORRAL_SCHEDULER_URL: env.schedulerUrl,
    CORRAL_ARTIFACT_URL: env.artifactUrl,
    ...(env.token ? { CORRAL_ARTIFACT_SERVICE_TOKEN: env.token } : {}),
  });
  return startWeb(config, createLogger({ name: "web", level: process.env.TEST_LOG_LEVEL ?? "silent" }));
}
