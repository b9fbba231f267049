import assert from "node:assert/strict";
import fc from "fast-check";
import { createLogger } from "@corral/plumbing/logger.ts";
import { openDatabase, type Database } from "@corral/plumbing/db/open-database.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { createReconciler } from "@corral/scheduler/reconcile/reconciler.ts";
import { createRunStore } from "@corral/scheduler/runs/run-store.ts";
import type { RuntimeFact } from "@corral/scheduler/runtime/runtime-backend.ts";
import type { CompletionKind } from "@corral/scheduler/finalization/decide-final-status.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { completionKinds, tableStatus, terminalFacts } from "./finalization-table.ts";
import { createScriptedRuntime } from "./support/scripted-runtime.ts";
import { seedRunningRun } from "./support/seed-running-run.ts";

const COMPLETION_WAIT_MS = 40;

type Evidence = { kind: "cancel" } | { kind: "completion"; completion: Exclude<CompletionKind, "none"> } | { kind: "fact"; fact: RuntimeFact };

describe("reconciler: every finalization-table row under every arrival order", function () {
  this.timeout(120_000);
  let testDb: TestDatabase;
  let database: Database;
  let sql: Sql;
  before(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, logger: createLogger({ name: "test", level: "silent" }) });
    sql = createSql(database.orm);
  });
  after(async () => {
    await database.close();
    await testDb.drop();
  });

  it("finalizes as the table says for the evidence present when the run first became decidable", async () => {
    const runtime = createScriptedRuntime();
    const reconciler = createReconciler({
      sql,
      runtimes: new Map([["local", runtime.backend]]),
      logger: createLogger({ name: "test", level: "silent" }),
      completionWaitMs: COMPLETION_WAIT_MS,
      defaultGraceMs: 10,
      onFinalized: () => {},
    });
    const store = createRunStore(sql);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc
            .record({ cancel: fc.boolean(), completion: fc.constantFrom(...completionKinds), fact: fc.constantFrom(...terminalFacts) })
            .chain(({ cancel, completion, fact }) => {
              const evidence: Evidence[] = [{ kind: "fact", fact }];
              if (cancel) evidence.push({ kind: "cancel" });
              if (completion !== "none") evidence.push({ kind: "completion", completion });
              // Every order of the row's evidence, with "running" observations before the process ends.
              return fc.tuple(
                fc.shuffledSubarray(evidence, { minLength: evidence.length, maxLength: evidence.length }),
                fc.array(fc.nat(), { maxLength: 3 }),
              );
            }),
          async ([order, noise]) => {
            const terminalAt = order.findIndex((e) => e.kind === "fact");
            const arrivals: Evidence[] = [...order];
            for (const at of noise) arrivals.splice(at % (terminalAt + 1), 0, { kind: "fact", fact: "running" });

            const runId = await seedRunningRun(sql);
            let seen = { cancel: false, completion: "none" as CompletionKind, fact: "running" as RuntimeFact };
            let expected: string | undefined;
            for (const arrival of arrivals) {
              const terminal = expected !== undefined;
              if (arrival.kind === "cancel") {
                await store.requestCancel(runId, "test", 10).catch(() => {}); // refused once terminal, like the API
                if (!terminal) seen = { ...seen, cancel: true };
              } else if (arrival.kind === "completion") {
                await sql.run(
                  "insert into completions (run_id, attempt, idempotency_key, status, result, conflict) values (?, 1, 'k', ?, '{}', ?)",
                  [runId, arrival.completion, terminal],
                );
                if (!terminal) seen = { ...seen, completion: arrival.completion };
              } else {
                runtime.set(runId, arrival.fact);
                if (!terminal) seen = { ...seen, fact: arrival.fact };
              }
              await reconciler.reconcileRun(runId);
              // The oracle: decidable once the process stopped and a cancel or a completion is in.
              if (!terminal && seen.fact !== "running" && (seen.cancel || seen.completion !== "none")) {
                expected = tableStatus(seen.cancel, seen.completion, seen.fact);
              }
              const status = (await sql.one<{ status: string }>("select status from runs where id = ?", [runId]))!.status;
              if (expected) assert.equal(status, expected, `after ${JSON.stringify(arrivals)}`);
              else assert.ok(["running", "cancelling"].includes(status), `decided too early: ${status} after ${JSON.stringify(arrivals)}`);
            }
            if (!expected) {
              // Nothing decided it yet: only the completion wait window can.
              await new Promise((resolve) => setTimeout(resolve, COMPLETION_WAIT_MS + 10));
              await reconciler.reconcileRun(runId);
              expected = tableStatus(seen.cancel, seen.completion, seen.fact);
            }
            const final = (await sql.one<{ status: string; reason: string; revoked: boolean }>(
              "select r.status, r.reason, c.revoked_at is not null as revoked from runs r join credentials c on c.run_id = r.id where r.id = ?",
              [runId],
            ))!;
            assert.equal(final.status, expected, `after ${JSON.stringify(arrivals)}: ${final.reason}`);
            assert.ok(final.revoked, "finalization revokes the attempt's credential");
          },
        ),
        { numRuns: 150 },
      );
    } finally {
      reconciler.close();
    }
  });
});
