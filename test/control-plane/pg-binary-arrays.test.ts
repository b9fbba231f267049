import assert from "node:assert/strict";
import pg from "pg";
import { createBinaryArray, PG_OID } from "@corral/control-plane/attach/pg-binary-arrays.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";

/** An array built element by element, starting small so that it has to grow. */
function built<T>(oid: number, values: readonly T[], add: (array: ReturnType<typeof createBinaryArray>, value: T) => void): Buffer {
  const array = createBinaryArray(oid, 16);
  for (const value of values) add(array, value);
  assert.equal(array.count, values.length);
  const finished = array.finish();
  assert.equal(finished.byteLength, array.byteLength);
  return finished;
}
const int8Array = (values: bigint[]) => built(PG_OID.int8, values, (a, v) => a.int8(v));
const textArray = (values: string[]) => built(PG_OID.text, values, (a, v) => a.text(v));
const byteaArray = (values: Uint8Array[]) => built(PG_OID.bytea, values, (a, v) => a.bytes(v));
const timestamptzArray = (values: Date[]) => built(PG_OID.timestamptz, values, (a, v) => a.timestamptz(v.getTime()));

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
    const values = [1n, 0n, -1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n, 4_294_967_296n, 4_294_967_295n, -4_294_967_297n, 2n ** 53n + 1n, -(2n ** 53n) - 1n];
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
    const values = [
      new Date("2026-11-29T10:58:01.123Z"), new Date("2000-01-01T00:00:00.000Z"), new Date("1999-12-31T23:59:59.999Z"),
      new Date("1969-07-20T20:17:40.001Z"), new Date(0), new Date("0001-01-01T00:00:00.000Z"), new Date("9999-12-31T23:59:59.999Z"),
    ];
    const rows = (await client.query<{ v: Date }>("select x as v from unnest($1::timestamptz[]) as x", [timestamptzArray(values)])).rows;
    assert.deepEqual(rows.map((r) => r.v.toISOString()), values.map((v) => v.toISOString()));
  });

  it("refuses a time that is not a number, naming its position", () => {
    assert.throws(() => timestamptzArray([new Date(0), new Date(Number.NaN)]), /timestamp 1 is not a finite number of milliseconds/);
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
