import type { Logger } from "../logger.ts";
import { migrateToLatest } from "./migrate.ts";
import { createOrm, type Orm } from "./orm.ts";

export interface Database {
  readonly orm: Orm;
  /** Names of the migrations this open applied; empty when the schema was up to date. */
  readonly applied: string[];
  close(): Promise<void>;
}

/** Connects to PostgreSQL and brings the schema up to date, as every service does at start-up. */
export async function openDatabase(options: { url: string; logger: Logger }): Promise<Database> {
  const orm = await createOrm({ url: options.url });
  let applied: string[];
  try {
    applied = await migrateToLatest(orm);
    if (applied.length > 0) options.logger.info({ migrations: applied }, "applied database migrations");
  } catch (error) {
    await orm.close();
    throw error;
  }
  return {
    orm,
    applied,
    close: () => orm.close(),
  };
}
