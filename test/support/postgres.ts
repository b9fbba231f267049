import { randomBytes } from "node:crypto";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from "@corral/plumbing/db/embedded-postgres.ts";

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

// One server per mocha process, started on first use; each caller gets its own database on it.
let shared: Promise<EmbeddedPostgresServer> | undefined;

/** A fresh, empty database on DATABASE_URL's server, or on an embedded one when DATABASE_URL is unset. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL ?? (await (shared ??= startEmbeddedPostgres())).url;
  const name = `corral_test_${process.pid}_${randomBytes(4).toString("hex")}`;
  await withClient(serverUrl, (client) => client.query(`create database ${client.escapeIdentifier(name)}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    // FORCE terminates the connections still open, e.g. a pool the test forgot to close.
    drop: () => withClient(serverUrl, (client) => client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`)),
  };
}

/** Mocha root afterAll hook: stops the shared embedded server, if one was started. */
export async function stopSharedPostgres(): Promise<void> {
  const starting = shared;
  shared = undefined;
  // A failed start has already cleaned up after itself and failed the test that asked for it.
  const server = await starting?.catch(() => undefined);
  await server?.stop();
}

async function withClient(url: string, use: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await use(client);
  } finally {
    await client.end();
  }
}
