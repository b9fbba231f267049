import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "../logger.ts";
import { createErrorInterceptor } from "./error-interceptor.ts";
import { createHealth, ServingStatus, type HealthController } from "./health-service.ts";
import { registerReflection } from "./reflection-service.ts";
import { file_grpc_health_v1_health, Health } from "@corral/contract/grpc/health/v1/health_pb.ts";

export interface ServerOptions {
  /** Shown in logs. */
  name: string;
  host: string;
  /** 0 picks a free port; read it from the result. */
  port: number;
  logger: Logger;
  /** The services the routes register; health and reflection report them. */
  services: DescService[];
  routes: (router: ConnectRouter) => void;
  /** Around the error mapping, so they see the status a client gets (tracing). */
  interceptors?: Interceptor[];
  /** Largest message accepted, in bytes. */
  readMaxBytes?: number;
}

export interface RunningServer {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly health: HealthController;
  /**
   * Stops gracefully: health turns NOT_SERVING, new connections are refused, open
   * connections get GOAWAY so unary calls finish, long-lived streams are told UNAVAILABLE
   * (clients reconnect elsewhere), and whatever is left after `graceMs` is destroyed.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * One h2c port serving gRPC, gRPC-Web and Connect for the given services, plus
 * grpc.health.v1.Health and server reflection.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const serviceNames = [...options.services.map((s) => s.typeName), Health.typeName];
  const health = createHealth(options.services.map((s) => s.typeName));
  const shutdown = new AbortController();
  const files = uniqueFiles([...options.services.map((s) => s.file), file_grpc_health_v1_health]);

  const handler = connectNodeAdapter({
    routes(router) {
      options.routes(router);
      health.register(router);
      registerReflection(router, files, [...serviceNames, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);
    },
    interceptors: [...(options.interceptors ?? []), createErrorInterceptor(logger)],
    shutdownSignal: shutdown.signal,
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
  });

  const server = http2.createServer(handler);
  // http2Server.close() waits for every session, so track them to end them ourselves.
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  server.on("sessionError", (error) => logger.debug({ err: error }, "http2 session error"));

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, services: serviceNames }, `${options.name} listening`);

  let closing: Promise<void> | undefined;
  return {
    url,
    host: address.address,
    port: address.port,
    health,
    close(graceMs = 5000) {
      closing ??= (async () => {
        health.setAll(ServingStatus.NOT_SERVING);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const session of sessions) session.close();
        shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, graceMs);
        await closed;
        clearTimeout(timer);
        logger.info(`${options.name} stopped`);
      })();
      return closing;
    },
  };
}

function uniqueFiles(files: DescFile[]): DescFile[] {
  return [...new Map(files.map((f) => [f.name, f])).values()];
}
