import assert from "node:assert/strict";
import pg from "pg";
import { byteaArray, int8Array, textArray, timestamptzArray } from "@corral/control-plane/attach/pg-binary-arrays.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

describe("control plane: binary array parameters", () => {
  let db: TestDatabase;
  let client: pg.Client;
  before(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });
  after(async () => {
    await client.end();
    await db.drop();
  });

  /** What PostgreSQL reads from the parameter, as text, element by element. */
  const read = async (type: string, parameter: Buffer) =>
    (await client.query<{ v: string | null }>(`select x::text as v from unnest($1::${type}[]) as x`, [parameter])).rows.map((r) => r.v);

  it("bigint[]: the whole int8 range", async () => {
    const values = [1n, 0n, -1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n, 4_294_967_296n];
    assert.deepEqual(await read("bigint", int8Array(values)), values.map(String));
  });

  it("text[]: characters a text array literal would have to quote, and non-ASCII", async () => {
    const values = ["run.progress", "", 'a "quoted", {braced} \\ back\\slashed', "NULL", "ünïcödé ✓ 🙂", " spaces "];
    assert.deepEqual(await read("text", textArray(values)), values);
  });

  it("bytea[]: every byte value, and empty", async () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const values = [all, new Uint8Array(0), Buffer.from("hi"), all.subarray(250, 253)];
    const rows = (await client.query<{ v: Buffer }>("select x as v from unnest($1::bytea[]) as x", [byteaArray(values)])).rows;
    assert.deepEqual(rows.map((r) => [...r.v]), values.map((v) => [...v]));
  });

  it("timestamptz[]: to the millisecond, before 1970 and 2000 too", async () => {
    const values = [new Date("2026-11-29T10:58:01.123Z"), new Date("2000-01-01T00:00:00.000Z"), new Date("1999-12-31T23:59:59.999Z"), new Date("1969-07-20T20:17:40.001Z"), new Date(0)];
    const rows = (await client.query<{ v: Date }>("select x as v from unnest($1::timestamptz[]) as x", [timestamptzArray(values)])).rows;
    assert.deepEqual(rows.map((r) => r.v.toISOString()), values.map((v) => v.toISOString()));
  });

  it("refuses an invalid date, naming its position", () => {
    assert.throws(() => timestamptzArray([new Date(0), new Date(Number.NaN)]), /timestamp 1 is an invalid date/);
  });

  it("empty arrays of every type", async () => {
    for (const [type, parameter] of [["bigint", int8Array([])], ["text", textArray([])], ["bytea", byteaArray([])], ["timestamptz", timestamptzArray([])]] as const) {
      assert.deepEqual(await read(type, parameter), [], type);
    }
  });

  it("is refused by PostgreSQL when the element type does not match the cast", async () => {
    await assert.rejects(client.query("select unnest($1::text[])", [int8Array([1n])]), /element type 20 \(bigint\) instead of expected 25 \(text\)/);
  });
});
