import type Docker from "dockerode";
import type { Logger } from "@corral/plumbing/logger.ts";
import { engineErrorMessage } from "./engine-errors.ts";

export interface EngineEvent {
  /** The container's id. */
  id: string;
  /** start, die, oom, destroy (Docker) or remove (podman), and others. */
  action: string;
  /** The container's labels (the engine puts them among the event's attributes). */
  attributes: Record<string, string>;
  /** Seconds since the epoch, by the engine's clock. */
  time: number;
}

export interface EngineEvents {
  /** Whether the stream is open now. */
  readonly connected: boolean;
  stop(): void;
}

const RESTART_DELAY_MS = { first: 250, max: 15_000 };

/**
 * The engine's container event stream, filtered by label, reopened whenever it breaks (an
 * engine restart, a dropped socket) with exponential backoff. A reopened stream asks for the
 * events since the last one seen, so a container that ended while the engine's API was down
 * is still reported (podman records its events while no API service runs); `onConnect` runs
 * after every (re)connection so the caller can also re-list, as an informer does.
 */
export function watchEngineEvents(options: {
  docker: Docker;
  labels: readonly string[];
  logger: Logger;
  onEvent(event: EngineEvent): void;
  onConnect(): void;
}): EngineEvents {
  let stopped = false;
  let connected = false;
  let delay = RESTART_DELAY_MS.first;
  let timer: NodeJS.Timeout | undefined;
  let since: number | undefined;
  let abort: AbortController | undefined;

  async function open(): Promise<void> {
    abort = new AbortController();
    const controller = abort;
    let stream: NodeJS.ReadableStream;
    try {
      const from = since ?? Math.floor(Date.now() / 1000) - 5;
      stream = (await options.docker.getEvents({
        since: from,
        filters: { type: ["container"], label: [...options.labels] },
        abortSignal: controller.signal,
      })) as NodeJS.ReadableStream;
    } catch (error) {
      retry(error);
      return;
    }
    if (stopped) {
      controller.abort();
      return;
    }
    connected = true;
    delay = RESTART_DELAY_MS.first;
    options.logger.debug({}, "docker event stream open");
    let buffered = "";
    stream.on("data", (chunk: Buffer | string) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line) handle(line);
      }
    });
    let ended = false;
    const end = (error?: unknown) => {
      if (ended) return;
      ended = true;
      connected = false;
      if (!stopped) retry(error ?? new Error("the engine closed the event stream"));
    };
    stream.once("error", end);
    stream.once("end", () => end());
    stream.once("close", () => end());
    options.onConnect();
  }

  function handle(line: string): void {
    let raw: { Type?: string; Action?: string; status?: string; id?: string; time?: number; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      raw = JSON.parse(line);
    } catch {
      options.logger.warn({ line: line.slice(0, 200) }, "unreadable docker event; skipped");
      return;
    }
    if (raw.Type !== undefined && raw.Type !== "container") return;
    const id = raw.Actor?.ID ?? raw.id;
    const action = raw.Action ?? raw.status;
    if (!id || !action) return;
    if (typeof raw.time === "number") since = Math.max(since ?? 0, raw.time);
    try {
      options.onEvent({ id, action, attributes: raw.Actor?.Attributes ?? {}, time: raw.time ?? 0 });
    } catch (error) {
      options.logger.error({ err: error }, "handling a docker event failed");
    }
  }

  function retry(error: unknown): void {
    if (stopped) return;
    options.logger.warn({ error: engineErrorMessage(error), retryInMs: delay }, "docker event stream broke; reopening it");
    clearTimeout(timer);
    timer = setTimeout(() => void open(), delay);
    delay = Math.min(delay * 2, RESTART_DELAY_MS.max);
  }

  void open();
  return {
    get connected() {
      return connected;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      abort?.abort();
    },
  };
}
