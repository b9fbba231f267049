import { defineEntity, p } from "@mikro-orm/core";
import { uint64, uuidPrimaryKey } from "./columns.ts";
import { Run } from "./run.ts";

export const Event = defineEntity({
  name: "Event",
  tableName: "events",
  properties: {
    id: uuidPrimaryKey(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade"),
    attempt: p.integer(),
    /** Per-attempt monotonic sequence assigned by the agent. */
    sequence: uint64(),
    type: p.text(),
    occurredAt: p.datetime(),
    /**
     * The RunEvent, protobuf binary as the agent sent it: storing it costs one encode instead of
     * a JSON conversion on the hot ingest path, and readers decode it with the contract.
     */
    payload: p.blob(),
    receivedAt: p.datetime().onCreate(() => new Date()).defaultRaw("now()"),
  },
  // Replayed events are dropped by the database, not by a read-then-write race in the control plane.
  uniques: [{ properties: ["run", "attempt", "sequence"] }],
});
