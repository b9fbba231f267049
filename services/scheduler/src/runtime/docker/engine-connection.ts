import { readFileSync } from "node:fs";
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { join } from "node:path";
import Docker from "dockerode";

/** Where the Docker Engine API is, from a DOCKER_HOST-style address. */
export interface EngineAddress {
  /** As configured, for messages. */
  url: string;
  socketPath?: string;
  host?: string;
  port?: number;
  protocol: "http" | "https";
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/**
 * unix:///path/to.sock, tcp://host:port or http://host:port (plain), https://host:port (TLS
 * with ca.pem, cert.pem and key.pem from certPath, as DOCKER_CERT_PATH holds them). ssh:// is
 * not supported: the credential goes to the agent's stdin over a hijacked HTTP connection.
 */
export function engineAddress(url: string, certPath?: string): EngineAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`"${url}" is not an engine address (expected unix:///path, tcp://host:port or https://host:port)`);
  }
  switch (parsed.protocol) {
    case "unix:":
      if (!parsed.pathname || parsed.pathname === "/") throw new Error(`"${url}" names no socket (expected unix:///path/to/docker.sock)`);
      return { url, socketPath: decodeURIComponent(parsed.pathname), protocol: "http" };
    case "tcp:":
    case "http:":
      return { url, host: parsed.hostname, port: Number(parsed.port || 2375), protocol: "http" };
    case "https:": {
      if (!certPath) throw new Error(`"${url}" needs client certificates (set CORRAL_DOCKER_CERT_PATH to a directory with ca.pem, cert.pem, key.pem)`);
      const read = (name: string) => readFileSync(join(certPath, name));
      return { url, host: parsed.hostname, port: Number(parsed.port || 2376), protocol: "https", tls: { ca: read("ca.pem"), cert: read("cert.pem"), key: read("key.pem") } };
    }
    default:
      throw new Error(`"${url}": the ${parsed.protocol.slice(0, -1)} scheme is not supported (expected unix://, tcp:// or https://)`);
  }
}

export function connectEngine(address: EngineAddress): Docker {
  if (address.socketPath) return new Docker({ socketPath: address.socketPath });
  return new Docker({ host: address.host, port: address.port, protocol: address.protocol, ...address.tls });
}

/**
 * Writes `data` to a created container's stdin and closes it, through a hijacked
 * `POST /containers/{id}/attach` (as `docker run -i` does). dockerode's attach would also send
 * its options as a request body, which a hijacked stdin stream delivers to the process.
 * Call before starting the container, so the first line cannot be missed.
 */
export async function attachStdin(address: EngineAddress, containerId: string, signal?: AbortSignal): Promise<{ write(data: string): Promise<void> }> {
  const request = address.protocol === "https" ? httpsRequest : httpRequest;
  const socket = await new Promise<Socket>((resolve, reject) => {
    const req: ClientRequest = request({
      ...(address.socketPath ? { socketPath: address.socketPath } : { host: address.host, port: address.port, ...address.tls }),
      path: `/containers/${encodeURIComponent(containerId)}/attach?stream=1&stdin=1`,
      method: "POST",
      headers: { Connection: "Upgrade", Upgrade: "tcp" },
      signal,
    });
    req.once("upgrade", (_response: IncomingMessage, upgraded: Socket, head: Buffer) => {
      // Output is not asked for; whatever arrives is dropped so the socket never stalls.
      if (head.length > 0) upgraded.unshift(head);
      upgraded.resume();
      resolve(upgraded);
    });
    req.once("response", (response: IncomingMessage) => {
      response.resume();
      reject(new Error(`attaching to the stdin of container ${containerId}: HTTP ${response.statusCode} instead of a protocol upgrade`));
    });
    req.once("error", reject);
    req.end();
  });
  socket.on("error", () => {});
  return {
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        socket.end(data, () => resolve());
        socket.once("error", reject);
      }),
  };
}
