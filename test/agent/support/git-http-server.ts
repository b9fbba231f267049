import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface GitHttpServer {
  /** Such as "http://127.0.0.1:41234/"; repositories are `${baseUrl}<name>.git`. */
  baseUrl: string;
  /** Every Authorization header received, or "" for requests without one, in order. */
  authorizations: string[];
  close(): Promise<void>;
}

/**
 * Real git smart HTTP: `git http-backend` as a CGI program behind HTTP basic authentication,
 * serving the bare repositories under `projectRoot` (push included) on 127.0.0.1.
 */
export async function startGitHttpServer(options: {
  projectRoot: string;
  username: string;
  password: string;
  env: Record<string, string>;
  /** Called for every authenticated request, while the git client that sent it is running. */
  onAuthenticated?: () => void;
}): Promise<GitHttpServer> {
  const expected = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString("base64")}`;
  const authorizations: string[] = [];
  const server = createServer((request, response) => {
    const authorization = request.headers.authorization ?? "";
    authorizations.push(authorization);
    if (authorization !== expected) {
      response.writeHead(401, { "WWW-Authenticate": 'Basic realm="corral test"' }).end();
      return;
    }
    options.onAuthenticated?.();
    serveCgi(request, response, options);
  });
  server.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => server.once("listening", resolve).once("error", reject));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/`,
    authorizations,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function serveCgi(request: IncomingMessage, response: ServerResponse, options: { projectRoot: string; username: string; env: Record<string, string> }): void {
  const url = new URL(request.url ?? "/", "http://localhost");
  const header = (name: string) => {
    const value = request.headers[name];
    return Array.isArray(value) ? value.join(", ") : value ?? "";
  };
  const env: Record<string, string> = {
    ...options.env,
    GIT_PROJECT_ROOT: options.projectRoot,
    GIT_HTTP_EXPORT_ALL: "1",
    REQUEST_METHOD: request.method ?? "GET",
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    CONTENT_TYPE: header("content-type"),
    REMOTE_USER: options.username, // http-backend allows receive-pack only for authenticated users
    REMOTE_ADDR: "127.0.0.1",
    HTTP_GIT_PROTOCOL: header("git-protocol"),
    HTTP_CONTENT_ENCODING: header("content-encoding"),
  };
  if (request.headers["content-length"]) env.CONTENT_LENGTH = header("content-length");
  const backend = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "inherit"] });
  request.pipe(backend.stdin);
  backend.stdin.on("error", () => {});
  let head = Buffer.alloc(0);
  let headersDone = false;
  backend.stdout.on("data", (chunk: Buffer) => {
    if (headersDone) {
      response.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end === -1) return;
    headersDone = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
      else response.setHeader(name, value);
    }
    response.writeHead(status);
    response.write(head.subarray(end + 4));
  });
  backend.on("close", () => {
    if (!headersDone) response.writeHead(502);
    response.end();
  });
}
