import { createServer, connect, type AddressInfo, type Socket } from "node:net";

export interface CuttingProxy {
  url: string;
  /** Bytes forwarded from clients to the target, over every connection. */
  readonly upstreamBytes: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Cuts the next connection (both directions, no goodbye) once it has forwarded this many client bytes. */
  cutNextAfter(bytes: number): void;
  /** Resets every open client connection (TCP RST, as from a killed process's host): the client reads ECONNRESET. */
  resetClients(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to `target` that can break a connection in the middle of whatever it carries, the
 * way a lost network or a killed pod does: sockets destroyed, no HTTP/2 GOAWAY, no RST_STREAM.
 */
export async function startCuttingProxy(target: { host: string; port: number }): Promise<CuttingProxy> {
  let upstreamBytes = 0;
  let connections = 0;
  let cutAfter: number | undefined;
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  const server = createServer((client) => {
    connections += 1;
    clients.add(client);
    client.on("close", () => clients.delete(client));
    const limit = cutAfter;
    cutAfter = undefined;
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    let forwarded = 0;
    client.on("data", (data: Buffer) => {
      if (limit !== undefined && forwarded + data.length >= limit) {
        const part = data.subarray(0, limit - forwarded);
        upstreamBytes += part.length;
        forwarded += part.length;
        upstream.write(part, () => {
          upstream.destroy();
          client.destroy();
        });
        client.pause();
        return;
      }
      forwarded += data.length;
      upstreamBytes += data.length;
      if (!upstream.write(data)) {
        client.pause();
        upstream.once("drain", () => client.resume());
      }
    });
    upstream.on("data", (data: Buffer) => {
      if (!client.write(data)) {
        upstream.pause();
        client.once("drain", () => upstream.resume());
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get upstreamBytes() {
      return upstreamBytes;
    },
    get connections() {
      return connections;
    },
    cutNextAfter(bytes) {
      cutAfter = bytes;
    },
    resetClients() {
      for (const client of clients) client.resetAndDestroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
