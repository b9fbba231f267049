import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "../logger.ts";
import { createErrorInterceptor } from "./error-interceptor.ts";
import { createHealth, ServingStatus, type HealthController } from "./health-service.ts";
import { preciseDecodeErrors } from "./precise-decode-errors.ts";
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
  /** Bounds on slow or idle clients; each has a default. */
  timeouts?: Partial<ServerTimeouts>;
}

/**
 * What a slow client (a slow-loris) may hold, in milliseconds. Long-lived streams are not
 * bounded in length: an attached agent or a download may last hours, but each is bounded by
 * inactivity, and a connection with no stream is closed.
 */
export interface ServerTimeouts {
  /** From the TCP connection to the client's HTTP/2 preface and SETTINGS. */
  handshakeMs: number;
  /** A connection with no open stream for this long is closed (GOAWAY). */
  idleSessionMs: number;
  /** A unary or server-streaming call must have sent its whole request within this. */
  requestMs: number;
  /** A client- or bidi-streaming call with no frame either way for this long is reset. */
  streamIdleMs: number;
  /** Streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
}

export const defaultServerTimeouts: Readonly<ServerTimeouts> = Object.freeze({
  handshakeMs: 10_000,
  idleSessionMs: 5 * 60_000,
  requestMs: 30_000,
  // Long: the agent keeps its run log upload open through steps that print nothing for a while.
  streamIdleMs: 60 * 60_000,
  maxConcurrentStreams: 1000,
});

/**
 * HTTP/2 receive windows: how many bytes a client may send ahead of what handlers have read, per
 * stream and per connection. A few 1 MiB upload chunks per stream; the connection's bounds what
 * one connection can make the server buffer, whatever its streams.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;

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
      router.handlers.splice(0, router.handlers.length, ...router.handlers.map(preciseDecodeErrors));
    },
    interceptors: [...(options.interceptors ?? []), createErrorInterceptor(logger)],
    shutdownSignal: shutdown.signal,
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
  });

  const timeouts = { ...defaultServerTimeouts, ...options.timeouts };
  const clientStreaming = new Set(
    options.services.flatMap((s) =>
      s.methods.filter((m) => m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming").map((m) => `/${s.typeName}/${m.name}`),
    ),
  );
  const server = http2.createServer({ settings: { maxConcurrentStreams: timeouts.maxConcurrentStreams, initialWindowSize: STREAM_WINDOW_BYTES } }, (req, res) => {
    boundRequest(req, clientStreaming.has(req.url.split("?")[0]!), timeouts);
    handler(req, res);
  });
  // http2Server.close() waits for every session, so track them to end them ourselves.
  const sessions = new Set<http2.ServerHttp2Session>();
  // A connection accepted while the server drains is told to go away at once; one accepted after
  // the grace is dropped: close() must not wait on a client that connected too late.
  let draining: "no" | "gracefully" | "forcibly" = "no";
  server.on("session", (session) => {
    if (draining === "forcibly") return session.destroy();
    sessions.add(session);
    // HTTP/2's default 64 KiB window lets a client send 64 KiB per round trip: over a network
    // with a 1 ms round trip an upload could never pass 64 MB/s, whatever the disk. Credit is
    // only given back as handlers read, so a stalled handler still holds the client back.
    session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    session.once("close", () => sessions.delete(session));
    boundSession(session, timeouts);
    if (draining === "gracefully") session.close();
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
        draining = "gracefully";
        for (const session of sessions) session.close();
        shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
        const timer = setTimeout(() => {
          draining = "forcibly";
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

/** A connection must finish its handshake in time, and may not stay open with no stream. */
function boundSession(session: http2.ServerHttp2Session, timeouts: ServerTimeouts): void {
  const handshake = setTimeout(() => session.destroy(), timeouts.handshakeMs);
  session.once("remoteSettings", () => clearTimeout(handshake));
  let idle: NodeJS.Timeout | undefined;
  let open = 0;
  const startIdle = () => {
    idle = setTimeout(() => session.close(), timeouts.idleSessionMs);
  };
  startIdle();
  session.on("stream", (stream) => {
    open++;
    clearTimeout(idle);
    stream.once("close", () => {
      if (--open === 0 && !session.closed && !session.destroyed) startIdle();
    });
  });
  session.once("close", () => {
    clearTimeout(handshake);
    clearTimeout(idle);
  });
}

/**
 * A call whose request is one message must send it in time; a streaming call may stay as long
 * as frames move. Either way a stalled stream is reset (RST_STREAM CANCEL), so its buffers go.
 * Only 'end' is listened to: a 'data' listener would take the body from the handler.
 */
function boundRequest(req: http2.Http2ServerRequest, streaming: boolean, timeouts: ServerTimeouts): void {
  const stream = req.stream;
  if (streaming) {
    stream.setTimeout(timeouts.streamIdleMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    return;
  }
  if (req.readableEnded) return;
  const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), timeouts.requestMs);
  req.once("end", () => clearTimeout(timer));
  stream.once("close", () => clearTimeout(timer));
}

function uniqueFiles(files: DescFile[]): DescFile[] {
  return [...new Map(files.map((f) => [f.name, f])).values()];
}
