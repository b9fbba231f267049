import { duration, loadConfig, positiveInt } from "../config.ts";
import type { ServerTimeouts } from "./create-server.ts";

/** Every service's bounds on slow and idle clients, from the environment; each has a default. */
export const serverTimeoutsConfig = {
  /** From a TCP connection to the client's HTTP/2 preface and SETTINGS. */
  CORRAL_HTTP_HANDSHAKE_TIMEOUT: duration("10s"),
  /** A connection with no open stream for this long is closed. */
  CORRAL_HTTP_IDLE_TIMEOUT: duration("5m"),
  /** A unary or server-streaming call must have sent its request within this. */
  CORRAL_HTTP_REQUEST_TIMEOUT: duration("30s"),
  /** A client- or bidi-streaming call with no frame either way for this long is reset. */
  CORRAL_HTTP_STREAM_IDLE_TIMEOUT: duration("1h"),
  /** Streams one connection may have open at once. */
  CORRAL_HTTP_MAX_CONCURRENT_STREAMS: positiveInt(1000),
};

export function serverTimeoutsFromEnv(env: Record<string, string | undefined> = process.env): ServerTimeouts {
  const config = loadConfig(serverTimeoutsConfig, env);
  return {
    handshakeMs: config.CORRAL_HTTP_HANDSHAKE_TIMEOUT,
    idleSessionMs: config.CORRAL_HTTP_IDLE_TIMEOUT,
    requestMs: config.CORRAL_HTTP_REQUEST_TIMEOUT,
    streamIdleMs: config.CORRAL_HTTP_STREAM_IDLE_TIMEOUT,
    maxConcurrentStreams: config.CORRAL_HTTP_MAX_CONCURRENT_STREAMS,
  };
}
