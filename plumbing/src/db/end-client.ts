import type pg from "pg";

/**
 * Ends a dedicated pg connection, politely if the server answers in time, else by dropping its
 * socket. A shutdown must not wait on a connection that went quiet (a server restarting, a
 * network gone): the session ends either way, which is what releases its locks and LISTENs.
 */
export async function endClient(client: pg.Client, timeoutMs = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const dropped = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      resolve();
    }, timeoutMs);
    timer.unref();
  });
  try {
    await Promise.race([client.end().catch(() => {}), dropped]);
  } finally {
    clearTimeout(timer);
  }
}
