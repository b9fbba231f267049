import { EventEmitter } from "node:events";

/** The default bound on what a container's log keeps: its last bytes, as log rotation would. */
export const DEFAULT_LOG_LIMIT_BYTES = 1024 * 1024;

/** A container's combined stdout and stderr, bounded, with followers for `follow=true`. */
export interface ContainerLog {
  append(chunk: Buffer): void;
  /** No more output will come (the process has exited and its pipes are closed). */
  close(): void;
  readonly closed: boolean;
  contents(): Buffer;
  /** Calls onChunk for each later chunk and onClose once; returns the unsubscribe function. */
  follow(onChunk: (chunk: Buffer) => void, onClose: () => void): () => void;
}

export function createContainerLog(limitBytes = DEFAULT_LOG_LIMIT_BYTES): ContainerLog {
  let kept = Buffer.alloc(0);
  let closed = false;
  const events = new EventEmitter();
  return {
    append(chunk) {
      kept = Buffer.concat([kept, chunk]);
      if (kept.length > limitBytes) kept = kept.subarray(kept.length - limitBytes);
      events.emit("chunk", chunk);
    },
    close() {
      if (closed) return;
      closed = true;
      events.emit("close");
    },
    get closed() {
      return closed;
    },
    contents: () => kept,
    follow(onChunk, onClose) {
      if (closed) {
        onClose();
        return () => {};
      }
      events.on("chunk", onChunk);
      events.once("close", onClose);
      return () => {
        events.off("chunk", onChunk);
        events.off("close", onClose);
      };
    },
  };
}

/**
 * What the kubelet returns for a log request: the last tailLines lines (all when undefined), then at
 * most limitBytes bytes from the start of those.
 */
export function selectLog(log: Buffer, options: { tailLines?: number; limitBytes?: number }): Buffer {
  const selected = options.tailLines === undefined ? log : lastLines(log, options.tailLines);
  return options.limitBytes === undefined ? selected : selected.subarray(0, options.limitBytes);
}

function lastLines(log: Buffer, count: number): Buffer {
  if (count === 0) return Buffer.alloc(0);
  // A final line without its newline still counts as a line; a final newline does not start one.
  let start = log.length > 0 && log[log.length - 1] === 0x0a ? log.length - 1 : log.length;
  for (let lines = 0; lines < count; lines++) {
    // (lastIndexOf counts a negative offset from the end, hence the guard.)
    const newline = start === 0 ? -1 : log.lastIndexOf(0x0a, start - 1);
    if (newline === -1) return log;
    start = newline;
  }
  return log.subarray(start + 1);
}
