import http from "node:http";
import type { AddressInfo } from "node:net";
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { z } from "zod";
import { listenAddress } from "../config.ts";
import type { Logger } from "../logger.ts";

/**
 * A "host:port" for a service's /metrics endpoint, or "off" (the default of a bare service: tests
 * start many services in one process, and a fixed default port would make them collide;
 * `corral up` and the Kubernetes manifests turn it on, see METRICS_PORTS).
 */
export const metricsListen = () =>
  z
    .string()
    .default("off")
    .transform((value, ctx) => {
      if (value.trim().toLowerCase() === "off") return undefined;
      const parsed = listenAddress("127.0.0.1:0").safeParse(value);
      if (!parsed.success) {
        ctx.addIssue({ code: "custom", message: `expected host:port or off, got "${value}"` });
        return z.NEVER;
      }
      return parsed.data;
    });

/** The conventional metrics port of each service, as `corral up` and the manifests use them. */
export const METRICS_PORTS = { scheduler: 9700, "control-plane": 9701, artifact: 9702 } as const;

export interface MetricsServer {
  /** Where Prometheus scrapes, such as http://127.0.0.1:9700/metrics. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The Prometheus text endpoint of one service: GET /metrics on its own HTTP/1.1 port (Prometheus
 * scrapes HTTP/1.1; the service's main port is h2c), nothing else.
 */
export async function serveMetrics(options: { host: string; port: number; exporter: PrometheusExporter; logger: Logger }): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path === "/metrics" && (req.method === "GET" || req.method === "HEAD")) {
      options.exporter.getMetricsRequestHandler(req, res);
      return;
    }
    res.writeHead(path === "/metrics" ? 405 : 404, { "content-type": "text/plain; charset=utf-8" });
    res.end(path === "/metrics" ? "use GET\n" : "not found; metrics are at /metrics\n");
  });
  // Scrapes are short; a client that holds a connection open must not delay a drain.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}/metrics`;
  options.logger.info({ url }, "metrics endpoint listening");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
