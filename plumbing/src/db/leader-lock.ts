import pg from "pg";
import { endClient } from "./end-client.ts";
import type { Logger } from "../logger.ts";

export interface LeaderLock {
  /** Whether this process holds the lock now. */
  isLeader(): boolean;
  /** Called with true when this process becomes the leader, false when it stops being it. */
  onChange(listener: (leader: boolean) => void): void;
  close(): Promise<void>;
}

/**
 * One leader among replicas: a PostgreSQL session-level advisory lock held on a dedicated
 * connection. Whoever holds it leads; when the leader dies or its connection drops, PostgreSQL
 * releases the lock with the session, and another replica's next try takes it. No clock, no
 * lease to renew: the database's own notion of a live session decides.
 */
export function createLeaderLock(options: { url: string; key: number; logger: Logger; retryMs?: number }): LeaderLock {
  const retryMs = options.retryMs ?? 1000;
  const listeners: ((leader: boolean) => void)[] = [];
  let client: pg.Client | undefined;
  let leader = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  function setLeader(value: boolean): void {
    if (leader === value) return;
    leader = value;
    options.logger.info({ key: options.key }, value ? "became the leader" : "no longer the leader");
    for (const listener of listeners) listener(value);
  }

  function drop(next: pg.Client): void {
    if (client !== next) return;
    client = undefined;
    setLeader(false);
    void endClient(next);
  }

  async function attempt(): Promise<void> {
    timer = undefined;
    if (closed) return;
    try {
      if (!client) {
        const next = new pg.Client({ connectionString: options.url });
        next.on("error", (error) => {
          options.logger.warn({ err: error }, "leader lock connection lost");
          drop(next);
          if (!closed) timer ??= setTimeout(attempt, retryMs);
        });
        await next.connect();
        if (closed) {
          await endClient(next);
          return;
        }
        client = next;
      }
      const { rows } = await client.query<{ locked: boolean }>("select pg_try_advisory_lock($1) as locked", [options.key]);
      if (rows[0]?.locked) {
        setLeader(true);
        return; // held until the session ends
      }
    } catch (error) {
      options.logger.warn({ err: error }, "cannot try the leader lock; retrying");
      if (client) drop(client);
    }
    if (!closed) timer ??= setTimeout(attempt, retryMs);
  }

  void attempt();
  return {
    isLeader: () => leader,
    onChange(listener) {
      listeners.push(listener);
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      const last = client;
      client = undefined;
      // Ending the session releases the lock at once, so a successor need not wait.
      if (last) await endClient(last);
      setLeader(false);
    },
  };
}
