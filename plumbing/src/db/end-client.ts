import type pg from "pg";
import { settlesWithin } from "../settles-within.ts";

/**
 * Ends a dedicated pg connection, politely if the server answers in time, else by dropping its
 * socket. A shutdown must not wait on a connection that went quiet (a server restarting, a
 * network gone): the session ends either way, which is what releases its locks and LISTENs.
 */
export async function endClient(client: pg.Client, timeoutMs = 2000): Promise<void> {
  if (await settlesWithin(client.end().catch(() => {}), timeoutMs)) return;
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
