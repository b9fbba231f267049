import { defineEntity, p } from "@mikro-orm/core";
import { uuidPrimaryKey } from "./columns.ts";
import { Run, type RunResult } from "./run.ts";

export const Completion = defineEntity({
  name: "Completion",
  tableName: "completions",
  properties: {
    id: uuidPrimaryKey(),
    run: () => p.manyToOne(Run).ref().deleteRule("cascade"),
    attempt: p.integer(),
    idempotencyKey: p.text(),
    status: p.text(),
    result: p.json<RunResult>(),
    /** Why the attempt failed or was cancelled, as the agent said. */
    reason: p.text().nullable(),
    artifactState: p.text().nullable(),
    /** A different key after the run had finished: recorded, never applied. */
    conflict: p.boolean().default(false),
    /** For a conflict: different_key or run_terminal, so a resend gets the same answer. */
    conflictReason: p.text().nullable(),
    receivedAt: p.datetime().onCreate(() => new Date()).defaultRaw("now()"),
  },
  uniques: [{ properties: ["run", "idempotencyKey"] }],
});
