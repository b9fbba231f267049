import type { Orm } from "./orm.ts";

/** An open transaction; pass it to every statement that must be part of it. */
export type Transaction = { readonly __brand: "Transaction" };

/**
 * Typed raw SQL over the ORM's pool, for the queries an ORM expresses badly: locking reads
 * (FOR UPDATE SKIP LOCKED), fenced updates, batch inserts and NOTIFY. Placeholders are `?`.
 * Rows come back with PostgreSQL's column names; timestamps and bigints as strings.
 */
export function createSql(orm: Orm) {
  const connection = orm.em.getConnection();
  const exec = <R>(sql: string, params: unknown[], method: "all" | "get" | "run", trx?: Transaction) =>
    connection.execute(sql, params as never[], method, trx as never) as unknown as Promise<R>;
  return {
    all: <T>(sql: string, params: unknown[] = [], trx?: Transaction) => exec<T[]>(sql, params, "all", trx),
    one: <T>(sql: string, params: unknown[] = [], trx?: Transaction) => exec<T | undefined>(sql, params, "get", trx),
    /** Returns the number of rows affected. */
    run: async (sql: string, params: unknown[] = [], trx?: Transaction) =>
      (await exec<{ affectedRows: number }>(sql, params, "run", trx)).affectedRows,
    transaction: <T>(work: (trx: Transaction) => Promise<T>) =>
      connection.transactional((trx) => work(trx as unknown as Transaction)) as Promise<T>,
  };
}

export type Sql = ReturnType<typeof createSql>;
