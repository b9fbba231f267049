import { randomUUID } from "node:crypto";
import { p } from "@mikro-orm/core";

// Column builders shared by the entities. Values are produced in the app (so new entities know their id and
// timestamps before flush) and defaulted in the database (so raw batch inserts need not spell them out).

export const uuidPrimaryKey = () => p.uuid().primary().onCreate(() => randomUUID()).defaultRaw("gen_random_uuid()");

export const createdAt = () => p.datetime().onCreate(() => new Date()).defaultRaw("now()");

export const updatedAt = () =>
  p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()).defaultRaw("now()");

export const timestamp = () => p.datetime().nullable();

/** uint64 in the contract; bigint keeps it lossless, as protobuf-es does. */
export const uint64 = () => p.bigint("bigint");
