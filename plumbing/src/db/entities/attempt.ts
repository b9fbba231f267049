import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, timestamp, uint64, uuidPrimaryKey } from "./columns.ts";
import { Run } from "./run.ts";

/** How the runtime backend finds the attempt's sandbox again. */
export interface RuntimeHandle {
  pid?: number;
  /**
   * Local runtime: when `pid` started (field 22 of /proc/<pid>/stat, clock ticks after boot).
   * A pid alone may have been recycled by the time a restarted scheduler looks; pid and start
   * time together name one process.
   */
  startTime?: number;
  /** Local runtime: where the agent's wrapper records its exit status. */
  exitFile?: string;
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
    /** Instance id the lease's holder sent in its Hello (empty: an agent that sends none). */
    leaseHolder: p.text().nullable(),
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
