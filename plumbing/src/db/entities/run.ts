import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, timestamp, updatedAt, uuidPrimaryKey } from "./columns.ts";

export const runStatuses = ["queued", "launching", "running", "cancelling", "completed", "failed", "cancelled"] as const;
export type RunStatus = (typeof runStatuses)[number];

export const runtimes = ["local", "docker", "kubernetes"] as const;
export type Runtime = (typeof runtimes)[number];

export interface RunResult {
  commitSha?: string;
  branch?: string;
  changedFiles?: string[];
}

export const Run = defineEntity({
  name: "Run",
  tableName: "runs",
  properties: {
    id: uuidPrimaryKey(),
    status: p.enum(runStatuses),
    runtime: p.enum(runtimes),
    repositoryUrl: p.text().index(),
    baseRef: p.text(),
    /** The full run spec as submitted. */
    spec: p.json<Record<string, unknown>>(),
    /** SubmitRun idempotency key. */
    requestId: p.text().nullable().unique(),
    currentAttempt: p.integer().default(0),
    phase: p.text().nullable(),
    currentStep: p.text().nullable(),
    cancelRequestedAt: timestamp(),
    cancelReason: p.text().nullable(),
    /** Grace asked for by CancelRun; null uses the spec's. */
    cancelGraceMs: p.integer().nullable(),
    /** Why the run ended up in its final status. */
    reason: p.text().nullable(),
    result: p.json<RunResult>().nullable(),
    artifactState: p.text().nullable(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    launchedAt: timestamp(),
    attachedAt: timestamp(),
    finishedAt: timestamp(),
    /**
     * W3C trace context (traceparent, tracestate) of the SubmitRun span: later work on the run in
     * any process (admission, launch, attach, the agent, finalization) joins this trace.
     */
    traceParent: p.text().nullable(),
    traceState: p.text().nullable(),
  },
  // The queue takes the oldest runs of a status; listings page by status and age.
  indexes: [{ properties: ["status", "createdAt"] }],
});
