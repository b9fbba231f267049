import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { createErrorInterceptor } from "@corral/plumbing/server/error-interceptor.ts";
import type { StartedService } from "@corral/plumbing/service-main.ts";
import { ensureBundle, type BundleOptions } from "./bundle/build-bundle.ts";
import type { WebConfig } from "./config.ts";
import { forwardService } from "./forward/forward-service.ts";
import { createDownloadRoute, DOWNLOAD_PATH } from "./http/download-route.ts";
import { loadStaticFiles } from "./http/static-files.ts";

/** What the dashboard forwards: all of RunService, and only the reads of ArtifactService. */
export const RUN_METHODS = ["submitRun", "getRun", "listRuns", "cancelRun", "retryRun", "watchRun", "listRuntimes"] as const;
export const ARTIFACT_METHODS = ["download", "stat", "list"] as const;

export interface WebServer extends StartedService {
  readonly server: { url: string; host: string; port: number };
}

/**
 * The dashboard: one HTTP/1.1 port (browsers do not speak h2c) serving the UI bundle and the
 * Connect protocol for RunService and ArtifactService's reads, each call forwarded to the real
 * service. No state of its own, no database: any number of replicas, restarted at will.
 */
export async function startWeb(config: WebConfig, logger: Logger, options: { bundle?: BundleOptions } = {}): Promise<WebServer> {
  const bundle = await ensureBundle(options.bundle);
  if (bundle.built) logger.info({ dir: bundle.dir }, "built the dashboard bundle");
  const files = await loadStaticFiles(bundle.dir);

  const scheduler = createClient(RunService, createGrpcTransport({ baseUrl: config.CORRAL_SCHEDULER_URL }));
  const artifacts = createClient(ArtifactService, createGrpcTransport({ baseUrl: config.CORRAL_ARTIFACT_URL }));
  const token = config.CORRAL_ARTIFACT_SERVICE_TOKEN;
  const artifactHeaders = token ? { authorization: `Bearer ${token}` } : undefined;
  if (!artifactHeaders) logger.warn("CORRAL_ARTIFACT_SERVICE_TOKEN is not set: the dashboard cannot show run logs or artifacts");
  const download = createDownloadRoute({ client: artifacts, headers: artifactHeaders, logger });

  let draining = false;
  const shutdown = new AbortController();
  const handler = connectNodeAdapter({
    routes(router) {
      router.service(RunService, forwardService(RunService, scheduler, RUN_METHODS));
      // Without the token, the calls go out without one and the artifact service says UNAUTHENTICATED.
      router.service(ArtifactService, forwardService(ArtifactService, artifacts, ARTIFACT_METHODS, { headers: artifactHeaders }), {
        // Stored bytes, often compressed already; the artifact service does not compress either.
        compressMinBytes: Number.POSITIVE_INFINITY,
      });
    },
    interceptors: [createErrorInterceptor(logger)],
    shutdownSignal: shutdown.signal,
    readMaxBytes: 4 * 1024 * 1024,
    // Only an HTTP/1.1 server calls this (see below), so the node:http types are the real ones.
    fallback(nodeReq, nodeRes) {
      const req = nodeReq as http.IncomingMessage;
      const res = nodeRes as http.ServerResponse;
      const path = new URL(req.url ?? "/", "http://x").pathname;
      if (path === "/healthz") {
        res.writeHead(draining ? 503 : 200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
        return void res.end(draining ? "draining\n" : "ok\n");
      }
      if (path === DOWNLOAD_PATH) return void download(req, res);
      if (files.serve(req, res)) return;
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("not found\n");
    },
  });

  const server = http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.CORRAL_WEB_LISTEN.port, config.CORRAL_WEB_LISTEN.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, scheduler: config.CORRAL_SCHEDULER_URL, artifact: config.CORRAL_ARTIFACT_URL }, "dashboard listening");

  let closing: Promise<void> | undefined;
  return {
    server: { url, host: address.address, port: address.port },
    close(graceMs = 5000) {
      closing ??= (async () => {
        draining = true;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // Open WatchRun and log streams end UNAVAILABLE; the page resumes them elsewhere.
        shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
        // Keep-alive connections turn idle as their last response ends: close each as it does.
        server.closeIdleConnections();
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        await closed;
        clearInterval(idle);
        clearTimeout(timer);
        logger.info("dashboard stopped");
      })();
      return closing;
    },
  };
}
