import { Migrator } from "@mikro-orm/migrations";
import { MikroORM } from "@mikro-orm/postgresql";
import { entities } from "./entities/index.ts";
import { migrations } from "./migrations/index.ts";

export interface OrmOptions {
  url: string;
  /** Log every query. */
  debug?: boolean;
}

export type Orm = Awaited<ReturnType<typeof createOrm>>;

export function createOrm({ url, debug = false }: OrmOptions) {
  return MikroORM.init({
    clientUrl: url,
    entities,
    extensions: [Migrator],
    debug,
    // Enough for one service's concurrent handlers; three services plus the CLI stay well under
    // PostgreSQL's default max_connections (100). migrateToLatest needs two at once.
    pool: { min: 0, max: 10 },
    // The database is provisioned before start-up; creating it here would race between the services.
    ensureDatabase: false,
    migrations: {
      migrationsList: migrations,
      // Migrations are diffed against a freshly migrated database (see create-migration.ts), not a snapshot file.
      snapshot: false,
      // migrateToLatest returns what it applied; the caller logs it.
      silent: true,
      fileName: (timestamp, name) => `${timestamp}-${name ?? "migration"}`,
    },
  });
}
