import { createServer, connect, type AddressInfo, type Socket } from "node:net";

export interface SwitchingProxy {
  url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Where new connections go from now on. */
  retarget(target: { host: string; port: number }): void;
  /**
   * A partition: every client socket is destroyed (no GOAWAY, no RST_STREAM), while the
   * connections to the old target stay open and silent, so the server side learns nothing
   * until its own timers or a fence tell it.
   */
  partition(): void;
  close(): Promise<void>;
}

/** A TCP proxy whose target can be switched, standing in for a Service in front of replicas. */
export async function startSwitchingProxy(initial: { host: string; port: number }): Promise<SwitchingProxy> {
  let target = initial;
  let connections = 0;
  const clients = new Set<Socket>();
  const upstreams = new Set<Socket>();
  const server = createServer((client) => {
    connections += 1;
    const upstream = connect(target.port, target.host);
    clients.add(client);
    upstreams.add(upstream);
    client.on("error", () => {});
    upstream.on("error", () => {});
    let partitioned = false;
    client.on("close", () => {
      clients.delete(client);
      // A partition keeps the far side open; an ordinary close closes it.
      if (!partitioned) upstream.destroy();
    });
    upstream.on("close", () => {
      upstreams.delete(upstream);
      client.destroy();
    });
    (client as Socket & { partition?: () => void }).partition = () => {
      partitioned = true;
      upstream.unpipe(client);
      upstream.pause();
      client.destroy();
    };
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    retarget(next) {
      target = next;
    },
    partition() {
      for (const client of [...clients]) (client as Socket & { partition?: () => void }).partition?.();
    },
    async close() {
      for (const socket of [...clients, ...upstreams]) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
