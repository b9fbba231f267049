import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, timestamp, uint64, uuidPrimaryKey } from "./columns.ts";
import { Run } from "./run.ts";

/** How the runtime backend finds the attempt's sandbox again. */
export interface RuntimeHandle {
  pid?: number;
  containerId?: string;
  namespace?: string;
  jobName?: string;
}

export const Attempt = defineEntity({
  name: "Attempt",
  tableName: "attempts",
  properties: {
    id: uuidPrimaryKey(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade"),
    number: p.integer(),
    status: p.text(),
    leaseEpoch: uint64().default(0),
    leaseExpiresAt: timestamp(),
    runtimeHandle: p.json<RuntimeHandle>().nullable(),
    /** Last observed runtime fact: succeeded | failed | missing | running. */
    runtimeFact: p.text().nullable(),
    launchedAt: timestamp(),
    attachedAt: timestamp(),
    firstEventAt: timestamp(),
    finishedAt: timestamp(),
    createdAt: createdAt(),
  },
  uniques: [{ properties: ["run", "number"] }],
});
