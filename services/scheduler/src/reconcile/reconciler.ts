import type { Tracer } from "@opentelemetry/api";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { contextFromTraceContext, inSpan, runAttributes } from "@corral/plumbing/telemetry/trace-context.ts";
import type { SchedulerMetrics } from "../telemetry/scheduler-metrics.ts";
import { decideFinalStatus, type CompletionKind, type FinalStatus, type RuntimeFact } from "../finalization/decide-final-status.ts";
import { durationJsonMs } from "../runs/duration-json.ts";
import type { CleanupStep, RuntimeBackend, RuntimeHandle } from "../runtime/runtime-backend.ts";

export interface ReconcilerOptions {
  sql: Sql;
  runtimes: ReadonlyMap<string, RuntimeBackend>;
  logger: Logger;
  /** How long to wait for a completion once the agent's process has ended. */
  completionWaitMs: number;
  /** Grace used for a cancel that named none and a spec without one. */
  defaultGraceMs: number;
  /** Called after a run became terminal (capacity freed). */
  onFinalized(runId: string): void;
  /**
   * Whether this replica reconciles now. With several schedulers one leads (an advisory lock)
   * and the others leave runs alone, so that two never escalate or finalize the same run.
   */
  isLeader?: () => boolean;
  /** A finalization span in each run's trace; none without it. */
  tracer?: Tracer;
  /** Final statuses, start latencies and cancel latencies of the runs this replica finalizes. */
  metrics?: SchedulerMetrics;
}

interface ActiveAttempt {
  run_id: string;
  status: string;
  runtime: string;
  attempt: number;
  cancel_requested_at: string | null;
  cancel_grace_ms: number | null;
  spec_grace: string | null;
  runtime_handle: RuntimeHandle | null;
  lease_expires_at: string | null;
  attached_at: string | null;
  launched_at: string | null;
  process_ended_at: string | null;
  stored_fact: string | null;
  completion_status: string | null;
  completion_reason: string | null;
  completion_result: unknown;
  completion_artifact_state: string | null;
  repository_url: string;
  first_event_at: string | null;
  trace_parent: string | null;
  trace_state: string | null;
  now: string;
}

// After a cancel's grace, the runtime is told to stop the sandbox; after this much more
// time without the process ending, finalization stops waiting for it.
const ESCALATION_SLACK_MS = 5000;
// An agent that never attached within this long is considered lost.
const ATTACH_TIMEOUT_MS = 120_000;
// How much of a sandbox's output goes into a run's reason.
const DIAGNOSTICS_IN_REASON = 2048;

function tail(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(-max)}`;
}

/**
 * Level-based reconciliation of unfinished runs: each pass gathers the evidence (cancel
 * request, completion, runtime fact, lease, clocks) from PostgreSQL and the runtime, acts to
 * move it forward (escalate a cancel, stop a lost agent), and finalizes by the table once it
 * can. Passes are idempotent, so they can run on a timer and on every event.
 */
export function createReconciler(options: ReconcilerOptions) {
  const { sql, logger } = options;
  const inFlight = new Map<string, Promise<void>>();
  const rerun = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  // Cleanup steps already recorded by this process, so that repeated passes record each once.
  const noted = new Set<string>();

  async function note(backend: RuntimeBackend | undefined, row: ActiveAttempt, step: CleanupStep, message: string): Promise<void> {
    const key = `${row.run_id}/${row.attempt}/${step}`;
    if (noted.has(key)) return;
    noted.add(key);
    logger.info({ runId: row.run_id, attempt: row.attempt, step }, message);
    await backend?.note?.(row.run_id, row.attempt, step, message);
  }

  const load = (runId?: string) =>
    sql.all<ActiveAttempt>(
      `select r.id as run_id, r.status, r.runtime, a.number as attempt, r.cancel_requested_at, r.cancel_grace_ms,
              r.spec->'timeouts'->>'grace' as spec_grace, a.runtime_handle, a.lease_expires_at, a.attached_at, a.launched_at,
              a.finished_at as process_ended_at, a.runtime_fact as stored_fact, c.status as completion_status, c.reason as completion_reason,
              c.result as completion_result, c.artifact_state as completion_artifact_state, r.repository_url, a.first_event_at,
              r.trace_parent, r.trace_state, now() as now
         from runs r
         join attempts a on a.run_id = r.id and a.number = r.current_attempt
         left join completions c on c.run_id = r.id and c.attempt = a.number and not c.conflict
        where r.status in ('launching', 'running', 'cancelling') ${runId ? "and r.id = ?" : ""}`,
      runId ? [runId] : [],
    );

  async function reconcileAttempt(row: ActiveAttempt): Promise<void> {
    const backend = options.runtimes.get(row.runtime);
    const now = Date.parse(row.now);
    const log = logger.child({ runId: row.run_id, attempt: row.attempt });
    const observed = backend
      ? await backend.observe(row.run_id, row.attempt, row.runtime_handle)
      : { fact: "unknown" as const, detail: `runtime ${row.runtime} is not enabled here` };
    // The first terminal fact seen wins: a sandbox cleaned up later (a Job deleted by its TTL)
    // reads as missing, which must not turn a success into a failure.
    let fact = (row.stored_fact as RuntimeFact | null) ?? observed.fact;
    const notes: string[] = [];

    // The moment the process was first seen ended starts the completion wait window. Only a
    // definite exit is remembered as the fact: "missing" can be transient (a sandbox not yet
    // visible while launching), so it is observed afresh on every pass.
    let endedAt = row.process_ended_at ? Date.parse(row.process_ended_at) : undefined;
    // Without a handle the sandbox may still be starting; a launch that never recorded one (a
    // crash between admission and launch) counts as ended once the attach timeout has passed.
    const launched = row.runtime_handle !== null || (row.launched_at !== null && now - Date.parse(row.launched_at) > ATTACH_TIMEOUT_MS);
    // Until then "missing" only means "not recorded yet": the sandbox may be running (its agent
    // may even have completed) while the launch that started it records its handle. Deciding on
    // it would fail a run whose agent succeeded; it is a fact once the attach timeout has passed.
    if (fact === "missing" && !launched) fact = "running";
    if (fact !== "running" && endedAt === undefined && (launched || fact === "succeeded" || fact === "failed")) {
      const definite = fact === "succeeded" || fact === "failed" ? fact : null;
      await sql.run("update attempts set finished_at = now(), runtime_fact = ? where run_id = ? and number = ?", [definite, row.run_id, row.attempt]);
      endedAt = now;
      schedule(row.run_id, options.completionWaitMs + 50);
    }

    const leaseExpired = row.lease_expires_at !== null && Date.parse(row.lease_expires_at) < now;
    const neverAttached = row.attached_at === null && row.launched_at !== null && now - Date.parse(row.launched_at) > ATTACH_TIMEOUT_MS;
    if (fact === "running" && !row.completion_status && (leaseExpired || neverAttached) && backend && row.runtime_handle) {
      notes.push(leaseExpired ? "the agent stopped heartbeating and its lease expired" : "the agent never attached");
      log.warn({ leaseExpired, neverAttached }, "agent lost; stopping its sandbox");
      await backend.terminate(row.runtime_handle, 0);
    } else if (leaseExpired && fact !== "running" && !row.completion_status) {
      notes.push("the agent stopped heartbeating");
    }

    const cancelAccepted = row.cancel_requested_at !== null;
    let escalationExhausted = false;
    if (cancelAccepted && fact === "running") {
      const graceMs = row.cancel_grace_ms ?? durationJsonMs(row.spec_grace) ?? options.defaultGraceMs;
      const since = now - Date.parse(row.cancel_requested_at!);
      await note(backend, row, "cancel_requested", `cancel requested; the agent has ${graceMs} ms to stop its step and complete`);
      if (since > graceMs + ESCALATION_SLACK_MS && backend && row.runtime_handle) {
        await note(backend, row, "grace_elapsed", `the agent did not stop within the grace (${graceMs} ms); stopping its sandbox`);
        await backend.terminate(row.runtime_handle, 0);
      }
      escalationExhausted = since > graceMs + 3 * ESCALATION_SLACK_MS;
      schedule(row.run_id, Math.max(250, graceMs + ESCALATION_SLACK_MS - since));
    }
    if (fact === "running" && !backend) fact = "unknown";

    const decision = decideFinalStatus({
      cancelAccepted,
      completion: (row.completion_status as CompletionKind | null) ?? "none",
      runtimeFact: fact,
      // An agent that never started cannot complete: waiting for it would only delay the failure.
      waitWindowElapsed: endedAt !== undefined && (now - endedAt >= options.completionWaitMs || (observed.neverStarted === true && row.attached_at === null)),
      escalationExhausted,
    });
    if (!decision.decided) return;

    // The agent's own reason and the process detail explain a failure; a success needs neither.
    const failed = decision.status === "failed";
    // The sandbox's own output is the only account of an agent that never attached.
    const diagnostics =
      failed && row.attached_at === null ? await backend?.diagnostics?.(row.run_id, row.attempt, row.runtime_handle).catch(() => undefined) : undefined;
    const reason = [
      decision.status !== "completed" ? row.completion_reason : "",
      ...notes,
      decision.reason,
      failed ? observed.detail : "",
      diagnostics ? `the sandbox's last output: ${tail(diagnostics, DIAGNOSTICS_IN_REASON)}` : "",
    ]
      .filter(Boolean)
      .join("; ");
    const finishing = async () => {
      await finalize(row, decision.status, reason);
      await note(backend, row, "finalized", `finalized as ${decision.status}: ${decision.reason}`);
      if (backend) await backend.cleanup(row.run_id, row.attempt, row.runtime_handle).catch((error: unknown) => log.warn({ err: error }, "cleanup failed"));
    };
    if (options.tracer) {
      await inSpan(
        options.tracer,
        "corral.finalize",
        {
          parent: contextFromTraceContext({ traceparent: row.trace_parent, tracestate: row.trace_state }),
          attributes: {
            ...runAttributes({ runId: row.run_id, attempt: row.attempt, runtime: row.runtime, repositoryUrl: row.repository_url }),
            "corral.final_status": decision.status,
            "corral.runtime_fact": fact,
            "corral.completion": row.completion_status ?? "none",
          },
        },
        finishing,
      );
    } else await finishing();
    for (const step of ["cancel_requested", "grace_elapsed", "finalized"]) noted.delete(`${row.run_id}/${row.attempt}/${step}`);
    log.info({ status: decision.status, reason }, "run finalized");
    options.onFinalized(row.run_id);
  }

  async function finalize(row: ActiveAttempt, status: FinalStatus, reason: string): Promise<void> {
    const finished = await sql.transaction(async (trx) => {
      // The attempt's row first, then the run's: the order the control plane's writes take them
      // (a completion, a lease, events), so that the two never wait on each other in a cycle.
      await sql.run("select 1 from attempts where run_id = ? and number = ? for update", [row.run_id, row.attempt], trx);
      const changed = await sql.one<{ finished_at: string }>(
        `update runs set status = ?, reason = ?, result = ?::jsonb, artifact_state = ?, current_step = null,
                finished_at = now(), updated_at = now()
          where id = ? and current_attempt = ? and status in ('launching', 'running', 'cancelling') returning finished_at`,
        [status, reason, JSON.stringify(row.completion_result ?? null), row.completion_artifact_state, row.run_id, row.attempt],
        trx,
      );
      if (!changed) return undefined;
      await sql.run("update attempts set status = 'finished' where run_id = ? and number = ?", [row.run_id, row.attempt], trx);
      // The attempt's credential dies with it: nothing can attach or upload for it any more.
      await sql.run("update credentials set revoked_at = now() where run_id = ? and attempt = ? and revoked_at is null", [row.run_id, row.attempt], trx);
      await sql.run("select pg_notify('corral_run_changed', ?)", [row.run_id], trx);
      return changed.finished_at;
    });
    if (finished !== undefined) measure(row, status, Date.parse(finished));
  }

  /** A run this replica finalized, counted once: its final status, how its start went, how long its cancel took. */
  function measure(row: ActiveAttempt, status: FinalStatus, finishedAt: number): void {
    const metrics = options.metrics;
    if (!metrics) return;
    metrics.runFinished(status, row.runtime);
    const at = (time: string | null) => (time === null ? undefined : Date.parse(time));
    const launched = at(row.launched_at);
    const attached = at(row.attached_at);
    const firstEvent = at(row.first_event_at);
    if (launched !== undefined && attached !== undefined) metrics.startStage("launched_to_attached", row.runtime, attached - launched);
    if (attached !== undefined && firstEvent !== undefined) metrics.startStage("attached_to_first_event", row.runtime, firstEvent - attached);
    const cancelAt = at(row.cancel_requested_at);
    if (status === "cancelled" && cancelAt !== undefined) metrics.cancelled(row.runtime, finishedAt - cancelAt);
  }

  function schedule(runId: string, delayMs: number): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      void reconcileRun(runId);
    }, delayMs);
    timers.add(timer);
  }

  /** One pass over one run; concurrent requests for the same run coalesce into one more pass. */
  function reconcileRun(runId: string): Promise<void> {
    if (options.isLeader && !options.isLeader()) return Promise.resolve();
    const current = inFlight.get(runId);
    if (current) {
      rerun.add(runId);
      return current;
    }
    const pass = (async () => {
      try {
        do {
          rerun.delete(runId);
          for (const row of await load(runId)) await reconcileAttempt(row);
        } while (rerun.has(runId));
      } catch (error) {
        logger.error({ err: error, runId }, "reconciliation failed; the next pass retries");
      } finally {
        inFlight.delete(runId);
      }
    })();
    inFlight.set(runId, pass);
    return pass;
  }

  /**
   * Sandboxes whose attempt is not its run's current, unfinished one (a run finalized while the
   * scheduler was down, a run deleted from the database, a crash between launch and record) are
   * removed. Read after the sandboxes are listed, so a run launched in between is seen active.
   */
  async function collectOrphans(): Promise<void> {
    for (const backend of options.runtimes.values()) {
      if (!backend.listSandboxes) continue;
      const sandboxes = await backend.listSandboxes();
      if (sandboxes.length === 0) continue;
      const active = await sql.all<{ id: string; current_attempt: number }>(
        `select id, current_attempt from runs where status in ('launching', 'running', 'cancelling') and id = any(string_to_array(?, ',')::uuid[])`,
        [sandboxes.map((s) => s.runId).join(",")],
      );
      const live = new Set(active.map((r) => `${r.id}/${r.current_attempt}`));
      for (const sandbox of sandboxes) {
        if (live.has(`${sandbox.runId}/${sandbox.attempt}`) || inFlight.has(sandbox.runId)) continue;
        logger.warn({ runId: sandbox.runId, attempt: sandbox.attempt, runtime: backend.name }, "removing an orphaned sandbox: its run is finished or unknown");
        await backend.cleanup(sandbox.runId, sandbox.attempt, sandbox.handle).catch((error: unknown) => logger.warn({ err: error }, "orphan cleanup failed"));
      }
    }
  }

  return {
    reconcileRun,
    /** Finalizes an attempt that could not be launched. */
    async failLaunch(runId: string, attempt: number, reason: string): Promise<void> {
      const [row] = await load(runId);
      if (row && row.attempt === attempt) await finalize(row, "failed", reason);
      options.onFinalized(runId);
    },
    /** A pass over every unfinished run, then over sandboxes no unfinished attempt owns. */
    async sweep(): Promise<void> {
      if (options.isLeader && !options.isLeader()) return;
      const rows = await load();
      await Promise.all([...new Set(rows.map((r) => r.run_id))].map(reconcileRun));
      await collectOrphans();
    },
    close(): void {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
