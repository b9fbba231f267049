import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join } from "node:path";
import { bundleFiles } from "../bundle/build-bundle.ts";
import { securityHeaders } from "./security-headers.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

interface File {
  body: Buffer;
  type: string;
  etag: string;
}

/**
 * The dashboard's files, read into memory once (they are small), so every response comes from
 * one consistent bundle. Assets have content hashes in their names and are cached for good;
 * every other path is a page of the single-page app and gets index.html, never cached.
 */
export async function loadStaticFiles(dir: string) {
  const files = new Map<string, File>();
  for (const path of await bundleFiles(dir)) {
    const body = await readFile(join(dir, path));
    files.set(`/${path}`, { body, type: TYPES[extname(path)] ?? "application/octet-stream", etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` });
  }
  const index = files.get("/index.html");
  if (!index) throw new Error(`the bundle in ${dir} has no index.html`);

  return {
    /** Answers GET and HEAD; false when the request is not for a file of the app. */
    serve(req: IncomingMessage, res: ServerResponse): boolean {
      if (req.method !== "GET" && req.method !== "HEAD") return false;
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const asset = path.startsWith("/assets/");
      const file = asset ? files.get(path) : index;
      if (!file) return false;
      const headers: Record<string, string> = {
        ...securityHeaders,
        "content-type": file.type,
        "content-length": String(file.body.length),
        etag: file.etag,
        "cache-control": asset ? "public, max-age=31536000, immutable" : "no-cache",
      };
      if (req.headers["if-none-match"] === file.etag) {
        res.writeHead(304, { etag: file.etag, "cache-control": headers["cache-control"]! });
        res.end();
        return true;
      }
      res.writeHead(200, headers);
      res.end(req.method === "HEAD" ? undefined : file.body);
      return true;
    },
  };
}
