import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { CommandError } from "../render/print-error.ts";

/**
 * Writes a file whole or not at all: `fill` writes into a temporary file beside it, which is
 * synced and renamed over `path` only if `fill` succeeds (its checks included). On any failure
 * the temporary file is removed and `path` is left as it was.
 */
export async function writeFileAtomically(path: string, fill: (write: (data: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
  const target = resolve(path);
  const dir = dirname(target);
  const temp = join(dir, `.${basename(target)}.${randomBytes(6).toString("hex")}.part`);
  let handle;
  try {
    handle = await open(temp, "wx");
  } catch (error) {
    throw new CommandError(`cannot write ${path}: ${(error as Error).message}`);
  }
  let closed = false;
  try {
    await fill(async (data) => {
      for (let written = 0; written < data.byteLength; ) written += (await handle.write(data, written, data.byteLength - written)).bytesWritten;
    });
    await handle.sync();
    await handle.close();
    closed = true;
    await rename(temp, target);
    // The rename itself survives a crash once the directory is synced.
    const directory = await open(dir, "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  } catch (error) {
    if (!closed) await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw error;
  }
}
