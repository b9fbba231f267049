import pg from "pg";
import { endClient } from "./end-client.ts";
import type { Logger } from "../logger.ts";

export type NotificationHandler = (payload: string) => void;

export interface PgListener {
  /** Registers a handler for a channel; LISTENs on first use. Returns an unsubscribe. */
  on(channel: string, handler: NotificationHandler): Promise<() => void>;
  close(): Promise<void>;
}

/**
 * PostgreSQL LISTEN on one dedicated connection, reconnecting with backoff when it drops.
 * This is how replicas push work to each other (a cancel reaches whichever control plane holds
 * the stream) without polling. Notifications sent while the connection was down are lost, so
 * callers must also reconcile from the tables; `onReconnect` tells them when to.
 */
export function createPgListener(options: { url: string; logger: Logger; onReconnect?: () => void }): PgListener {
  const handlers = new Map<string, Set<NotificationHandler>>();
  let client: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;
  let attempt = 0;

  const connect = (): Promise<pg.Client> =>
    (connecting ??= (async () => {
      for (;;) {
        if (closed) throw new Error("listener closed");
        const next = new pg.Client({ connectionString: options.url });
        try {
          await next.connect();
          next.on("notification", (message) => {
            for (const handler of handlers.get(message.channel) ?? []) handler(message.payload ?? "");
          });
          next.on("error", (error) => {
            options.logger.warn({ err: error }, "notification connection lost; reconnecting");
            if (client === next) {
              client = undefined;
              connecting = undefined;
              void endClient(next);
              if (!closed) void connect().then(() => options.onReconnect?.(), () => {});
            }
          });
          for (const channel of handlers.keys()) await next.query(`listen ${next.escapeIdentifier(channel)}`);
          client = next;
          attempt = 0;
          return next;
        } catch (error) {
          void endClient(next);
          attempt++;
          const delay = Math.min(5000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
          options.logger.warn({ err: error, delayMs: Math.round(delay) }, "cannot LISTEN yet; retrying");
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    })());

  return {
    async on(channel, handler) {
      let set = handlers.get(channel);
      const first = !set;
      if (!set) handlers.set(channel, (set = new Set()));
      set.add(handler);
      const connection = await connect();
      if (first && client === connection) await connection.query(`listen ${connection.escapeIdentifier(channel)}`);
      return () => set.delete(handler);
    },
    async close() {
      closed = true;
      if (client) await endClient(client);
      client = undefined;
    },
  };
}
