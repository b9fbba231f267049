import pg from "pg";

/**
 * A plain node-postgres pool, beside the ORM's, for hot paths that need what the ORM's raw
 * queries do not give: bind parameters (the ORM inlines and escapes values in JavaScript),
 * typed arrays and named prepared statements.
 */
export function createPgPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  // An idle client's connection dropping (a PostgreSQL restart) must not crash the process;
  // the next query gets a fresh connection.
  pool.on("error", () => {});
  return pool;
}

export type PgPool = pg.Pool;
