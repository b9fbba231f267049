import assert from "node:assert/strict";
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import { Attempt, Completion, Credential, Event, Run } from "@corral/plumbing/db/entities/index.ts";
import { migrateToLatest } from "@corral/plumbing/db/migrate.ts";
import { migrations } from "@corral/plumbing/db/migrations/index.ts";
import { createOrm, type Orm } from "@corral/plumbing/db/orm.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

const TABLES = ["artifacts", "attempts", "blobs", "completions", "credentials", "events", "runs", "uploads"];

async function allMigrationNames(orm: Orm): Promise<string[]> {
  const names = (await orm.migrator.getPending()).map((migration) => migration.name);
  assert.equal(names.length, migrations.length, "call on an unmigrated database");
  return names;
}

async function tablesIn(orm: Orm): Promise<string[]> {
  const rows = await orm.em.getConnection().execute<{ table_name: string }[]>(
    "select table_name from information_schema.tables where table_schema = 'public' order by table_name",
  );
  return rows.map((row) => row.table_name);
}

async function insertRun(orm: Orm) {
  const em = orm.em.fork();
  const run = em.create(Run, {
    status: "queued",
    runtime: "local",
    repositoryUrl: "https://example.test/repo.git",
    baseRef: "main",
    spec: { prompt: "fix it" },
  });
  await em.flush();
  return run;
}

describe("database migrations", () => {
  let database: TestDatabase;
  let orm: Orm;

  beforeEach(async () => {
    database = await createTestDatabase();
    orm = await createOrm({ url: database.url });
  });

  afterEach(async () => {
    await orm?.close();
    await database?.drop();
  });

  it("create every table on an empty database, matching the entities", async () => {
    assert.deepEqual(await tablesIn(orm), []);
    const all = await allMigrationNames(orm);
    assert.deepEqual(await migrateToLatest(orm), all);
    assert.deepEqual((await tablesIn(orm)).filter((table) => table !== "mikro_orm_migrations"), TABLES);
    // Entities changed without `npm run db:migration` show up here as a non-empty diff.
    assert.equal((await orm.schema.getUpdateSchemaSQL({ wrap: false })).trim(), "");
  });

  it("apply nothing the second time", async () => {
    await migrateToLatest(database.url);
    assert.deepEqual(await migrateToLatest(database.url), []);
    assert.deepEqual(await migrateToLatest(orm), []);
  });

  it("run once when three services migrate at the same time", async () => {
    const all = await allMigrationNames(orm);
    const results = await Promise.all([1, 2, 3].map(() => migrateToLatest(database.url)));
    assert.deepEqual(results.flat(), all);
    assert.equal(results.filter((applied) => applied.length > 0).length, 1);
  });

  describe("on a migrated database", () => {
    beforeEach(() => migrateToLatest(orm));

    it("reject a duplicate (run, attempt, sequence) event", async () => {
      const run = await insertRun(orm);
      const event = (sequence: bigint) => ({
        run: run.id,
        attempt: 1,
        sequence,
        type: "run.progress",
        occurredAt: new Date(),
        payload: Buffer.from([0x08, 0x01]),
      });
      await orm.em.insertMany(Event, [event(1n), event(2n)]);
      await assert.rejects(orm.em.insert(Event, event(2n)), UniqueConstraintViolationException);
      await orm.em.insert(Event, { ...event(2n), attempt: 2 });
      assert.equal(await orm.em.fork().count(Event, { run: run.id }), 3);
    });

    it("delete a run's attempts, events, completions and credentials with it", async () => {
      const run = await insertRun(orm);
      await orm.em.insert(Attempt, { run: run.id, number: 1, status: "running" });
      await orm.em.insert(Event, { run: run.id, attempt: 1, sequence: 1n, type: "run.started", occurredAt: new Date(), payload: Buffer.from([0x08, 0x01]) });
      await orm.em.insert(Completion, { run: run.id, attempt: 1, idempotencyKey: "k", status: "success", result: {} });
      await orm.em.insert(Credential, { run: run.id, attempt: 1, tokenHash: "ab12", expiresAt: new Date() });
      const em = orm.em.fork();
      const count = () =>
        Promise.all([
          em.count(Attempt, { run: run.id }),
          em.count(Event, { run: run.id }),
          em.count(Completion, { run: run.id }),
          em.count(Credential, { run: run.id }),
        ]);
      assert.deepEqual(await count(), [1, 1, 1, 1]);

      await orm.em.nativeDelete(Run, { id: run.id });
      assert.deepEqual(await count(), [0, 0, 0, 0]);
    });
  });
});
