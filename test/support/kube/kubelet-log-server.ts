import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { selectLog, type ContainerLog } from "./container-log.ts";

export interface KubeletLogServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The one kubelet endpoint the fake node serves: GET /containerLogs/{namespace}/{pod}/{container},
 * which the apiserver calls for pods/log, with the kubelet's limitBytes, tailLines and follow
 * parameters. HTTPS, as the apiserver only speaks HTTPS to kubelets; it presents no client cert
 * here, and none is asked for.
 */
export async function startKubeletLogServer(options: {
  certPem: string;
  keyPem: string;
  find(namespace: string, pod: string, container: string): ContainerLog | undefined;
}): Promise<KubeletLogServer> {
  const server: Server = createServer({ cert: options.certPem, key: options.keyPem }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://kubelet");
    const match = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (req.method !== "GET" || !match) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`the fake node serves only GET /containerLogs/{namespace}/{pod}/{container}, not ${req.method} ${url.pathname}\n`);
      return;
    }
    const [namespace, pod, container] = match.slice(1).map(decodeURIComponent) as [string, string, string];
    const log = options.find(namespace, pod, container);
    if (!log) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`container "${container}" in pod "${namespace}/${pod}" is not running on this node\n`);
      return;
    }
    let tailLines: number | undefined;
    let limitBytes: number | undefined;
    try {
      tailLines = integerParam(url, "tailLines", 0);
      limitBytes = integerParam(url, "limitBytes", 1);
    } catch (error) {
      res.writeHead(400, { "content-type": "text/plain" }).end(`${(error as Error).message}\n`);
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    const first = selectLog(log.contents(), { tailLines, limitBytes });
    let remaining = limitBytes === undefined ? Infinity : limitBytes - first.length;
    res.write(first);
    if (url.searchParams.get("follow") !== "true" || remaining <= 0) {
      res.end();
      return;
    }
    const unfollow = log.follow(
      (chunk) => {
        const part = chunk.subarray(0, Math.min(chunk.length, remaining));
        remaining -= part.length;
        res.write(part);
        if (remaining <= 0) {
          unfollow();
          res.end();
        }
      },
      () => res.end(),
    );
    res.on("close", unfollow);
  });
  // A node someone forgot to stop must not keep the test process alive.
  server.unref();
  server.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Followers of a running container would otherwise hold the server open.
        server.closeAllConnections();
      }),
  };
}

function integerParam(url: URL, name: string, min: number): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min) throw new Error(`${name} must be an integer >= ${min}, not "${text}"`);
  return value;
}
