import { createOrm, type Orm } from "./orm.ts";

// Every service migrates at start-up; the lock makes the others wait, then find nothing pending.
const LOCK_NAME = "corral:migrations";

/** Applies pending migrations under a PostgreSQL advisory lock and returns the names it applied. */
export async function migrateToLatest(target: Orm | string): Promise<string[]> {
  const orm = typeof target === "string" ? await createOrm({ url: target }) : target;
  try {
    const connection = orm.em.getConnection();
    // A transaction-level lock on one pooled connection, released by commit or rollback even if this
    // process dies mid-way; the migrator runs its own transaction on another connection.
    return await connection.transactional(async (lockTransaction) => {
      await connection.execute("select pg_advisory_xact_lock(hashtext(?))", [LOCK_NAME], "run", lockTransaction);
      const applied = await orm.migrator.up();
      return applied.map((migration) => migration.name);
    });
  } finally {
    if (typeof target === "string") await orm.close();
  }
}
