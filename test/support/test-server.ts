import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { createLogger } from "@corral/plumbing/logger.ts";
import { startServer, type RunningServer } from "@corral/plumbing/server/create-server.ts";

/** A real h2c server on a free loopback port, with the given routes. */
export function startTestServer(services: DescService[], routes: (router: ConnectRouter) => void): Promise<RunningServer> {
  return startServer({
    name: "test",
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ name: "test", level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    services,
    routes,
  });
}
