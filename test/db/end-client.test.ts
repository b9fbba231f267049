import assert from "node:assert/strict";
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import pg from "pg";
import { endClient } from "@corral/plumbing/db/end-client.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

/** A TCP proxy to PostgreSQL that can go quiet: it stops carrying bytes either way, keeping the sockets open. */
async function startQuietingProxy(target: URL) {
  let quiet = false;
  const sockets = new Set<Socket>();
  // Half-open allowed: a quiet server does not answer the client's FIN with its own either.
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
      sockets.add(from);
      from.on("error", () => {});
      from.on("data", (data: Buffer) => quiet || to.write(data));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    quieten: () => (quiet = true),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("ending a dedicated pg connection", () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(() => database.drop());

  it("ends politely when the server answers", async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    let ended = false;
    client.on("end", () => (ended = true));
    await endClient(client, 10_000);
    assert.ok(ended, "the connection ended");
  });

  it("drops the socket when the server has gone quiet, instead of waiting for ever", async () => {
    const proxy = await startQuietingProxy(new URL(database.url));
    try {
      const url = new URL(database.url);
      url.hostname = "127.0.0.1";
      url.port = String(proxy.port);
      const client = new pg.Client({ connectionString: url.toString() });
      client.on("error", () => {});
      await client.connect();
      await client.query("select 1");
      proxy.quieten();
      const started = performance.now();
      await endClient(client, 300);
      const waited = performance.now() - started;
      assert.ok(waited >= 250, `it gave the server its chance (${Math.round(waited)} ms)`);
      const stream = (client as unknown as { connection: { stream: Socket } }).connection.stream;
      assert.ok(stream.destroyed, "the socket is gone");
    } finally {
      await proxy.close();
    }
  });
});
