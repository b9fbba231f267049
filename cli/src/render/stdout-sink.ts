import { once } from "node:events";

/** Thrown by a write after the reader of stdout went away (`corral logs RUN | head`). */
export class BrokenPipeError extends Error {
  constructor() {
    super("stdout was closed");
    this.name = "BrokenPipeError";
  }
}

/**
 * Writes bytes to a stream, waiting for it to drain when its buffer is full: a slow reader (a
 * pager, a pipe) slows the download down instead of filling the CLI's memory.
 */
export function createSink(stream: NodeJS.WritableStream = process.stdout) {
  let broken = false;
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") broken = true;
  });
  return {
    async write(data: Uint8Array): Promise<void> {
      if (broken) throw new BrokenPipeError();
      if (stream.write(data)) return;
      try {
        await once(stream, "drain");
      } catch {
        throw new BrokenPipeError();
      }
    },
  };
}
