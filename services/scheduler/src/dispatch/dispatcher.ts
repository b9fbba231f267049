import { context, SpanKind, type Tracer } from "@opentelemetry/api";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { contextFromTraceContext, inSpan, runAttributes, traceContextOf } from "@corral/plumbing/telemetry/trace-context.ts";
import type { SchedulerMetrics } from "../telemetry/scheduler-metrics.ts";
import { durationJsonMs } from "../runs/duration-json.ts";
import type { LaunchRequest, RuntimeBackend } from "../runtime/runtime-backend.ts";

export interface DispatcherOptions {
  sql: Sql;
  runtimes: ReadonlyMap<string, RuntimeBackend>;
  logger: Logger;
  controlPlaneUrl: string;
  maxConcurrentRuns: number;
  maxRunsPerRepository: number;
  /** Called when a launch fails, so the run is finalized at once. */
  onLaunchFailed(runId: string, attempt: number, reason: string): Promise<void>;
  /** Admission and launch spans in each run's trace; no spans without it. */
  tracer?: Tracer;
  metrics?: SchedulerMetrics;
}

interface Admitted {
  runId: string;
  attempt: number;
  runtime: string;
  repositoryUrl: string;
  /** How long the run waited in the queue, by the database's clock. */
  queueWaitMs: number;
  traceContext: { traceparent: string | null; tracestate: string | null };
  credential: string;
  limits: LaunchRequest["limits"];
  timeouts: LaunchRequest["timeouts"];
}

const ACTIVE = "('launching', 'running', 'cancelling')";
// One lock id for admission, so that concurrent schedulers count the same active runs.
const ADMISSION_LOCK = 0x636f7272; // "corr"
/** Runs claimed per admission transaction at most. */
const ADMISSION_BATCH = 64;

const pgArray = (values: (string | number)[]) => `{${values.join(",")}}`;

/**
 * Takes queued runs in submission order, within the concurrency limits, and launches them.
 * Admission (counting active runs, claiming runs, minting their credentials) is one short
 * transaction per batch of runs under an advisory lock, so several schedulers never launch a run twice nor
 * exceed a limit together; the launch itself happens after the commit.
 */
export function createDispatcher(options: DispatcherOptions) {
  const { sql, logger } = options;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;

  /**
   * Admits up to ADMISSION_BATCH queued runs in one transaction: under the lock, the queued runs
   * whose repository has room are claimed in order, the limits applied among them too, and their
   * attempts, credentials and statuses written with one statement each, so admission costs a
   * few statements per batch rather than per run.
   */
  async function admitBatch(): Promise<Admitted[]> {
    return sql.transaction(async (trx) => {
      await sql.run("select pg_advisory_xact_lock(?)", [ADMISSION_LOCK], trx);
      const active = await sql.one<{ n: string }>(`select count(*) as n from runs where status in ${ACTIVE}`, [], trx);
      const room = options.maxConcurrentRuns - Number(active!.n);
      if (room <= 0) return [];
      const repositoryActive = `(select count(*) from runs x where x.repository_url = r.repository_url and x.status in ${ACTIVE})`;
      const candidates = await sql.all<{
        id: string; runtime: string; current_attempt: number; spec: { timeouts?: { run?: string; grace?: string }; limits?: Record<string, unknown> };
        repository_url: string; trace_parent: string | null; trace_state: string | null; queue_wait_ms: number; repository_active: string;
      }>(
        // A retried run was queued again when it was last updated (nothing else updates a queued run).
        // clock_timestamp(), not now(): this transaction may have begun before the run was inserted.
        `select r.id, r.runtime, r.current_attempt, r.spec, r.repository_url, r.trace_parent, r.trace_state,
                extract(epoch from clock_timestamp() - case when r.current_attempt = 0 then r.created_at else r.updated_at end) * 1000 as queue_wait_ms,
                ${repositoryActive} as repository_active
           from runs r
          where r.status = 'queued' and ${repositoryActive} < ?
          order by r.created_at, r.id
          limit ?
          for update skip locked`,
        [options.maxRunsPerRepository, Math.min(room, ADMISSION_BATCH)],
        trx,
      );
      // The per-repository limit among the runs of this batch; the first always fits.
      const taken = new Map<string, number>();
      const runs = candidates.filter((run) => {
        const count = Number(run.repository_active) + (taken.get(run.repository_url) ?? 0);
        if (count >= options.maxRunsPerRepository) return false;
        taken.set(run.repository_url, (taken.get(run.repository_url) ?? 0) + 1);
        return true;
      });
      if (runs.length === 0) return [];
      const admitted = runs.map((run) => {
        const { token, hash } = mintCredential();
        const runTimeoutMs = durationJsonMs(run.spec.timeouts?.run) ?? 3_600_000;
        const limits = run.spec.limits ?? {};
        return {
          hash,
          admitted: {
            runId: run.id,
            attempt: run.current_attempt + 1,
            runtime: run.runtime,
            repositoryUrl: run.repository_url,
            queueWaitMs: Number(run.queue_wait_ms),
            traceContext: { traceparent: run.trace_parent, tracestate: run.trace_state },
            credential: token,
            timeouts: { runMs: runTimeoutMs, graceMs: durationJsonMs(run.spec.timeouts?.grace) ?? 10_000 },
            limits: {
              cpuMillis: Number(limits.cpuMillis ?? 0) || undefined,
              memoryBytes: Number(limits.memoryBytes ?? 0) || undefined,
              pids: Number(limits.pids ?? 0) || undefined,
              diskBytes: Number(limits.diskBytes ?? 0) || undefined,
            },
          } satisfies Admitted,
        };
      });
      // Arrays travel as PostgreSQL array literals: uuids, integers and hex digests need no quoting.
      const ids = pgArray(admitted.map((a) => a.admitted.runId));
      const attempts = pgArray(admitted.map((a) => a.admitted.attempt));
      await sql.run(
        "insert into attempts (run_id, number, status, launched_at) select id, n, 'launching', now() from unnest(?::uuid[], ?::int[]) as t(id, n)",
        [ids, attempts],
        trx,
      );
      // The credential outlives the run's budget a little, so the agent can still complete.
      await sql.run(
        `insert into credentials (run_id, attempt, token_hash, expires_at)
         select id, n, h, now() + (ms * interval '1 millisecond') from unnest(?::uuid[], ?::int[], ?::text[], ?::bigint[]) as t(id, n, h, ms)`,
        [ids, attempts, pgArray(admitted.map((a) => a.hash)), pgArray(admitted.map((a) => a.admitted.timeouts.runMs + 3_600_000))],
        trx,
      );
      await sql.run(
        `update runs r set status = 'launching', current_attempt = t.n, launched_at = now(), updated_at = now()
           from unnest(?::uuid[], ?::int[]) as t(id, n) where r.id = t.id`,
        [ids, attempts],
        trx,
      );
      await sql.run("select pg_notify('corral_run_changed', id::text) from unnest(?::uuid[]) as id", [ids], trx);
      return admitted.map((a) => a.admitted);
    });
  }

  let handles: { run_id: string; number: number; handle: unknown; written: PromiseWithResolvers<void> }[] = [];

  /**
   * Records a launched attempt's runtime handle. The handles of the launches that end together
   * (a batch's) are written by one statement, in the turn after the first of them.
   */
  function recordHandle(runId: string, attempt: number, handle: unknown): Promise<void> {
    const written = Promise.withResolvers<void>();
    handles.push({ run_id: runId, number: attempt, handle, written });
    if (handles.length === 1) setImmediate(writeHandles);
    return written.promise;
  }

  async function writeHandles(): Promise<void> {
    const batch = handles;
    handles = [];
    try {
      await sql.run(
        `update attempts a set runtime_handle = t.handle
           from jsonb_to_recordset(?::jsonb) as t(run_id uuid, number int, handle jsonb)
          where a.run_id = t.run_id and a.number = t.number`,
        [JSON.stringify(batch.map(({ run_id, number, handle }) => ({ run_id, number, handle })))],
      );
      for (const entry of batch) entry.written.resolve();
    } catch (error) {
      for (const entry of batch) entry.written.reject(error);
    }
  }

  async function launch(admitted: Admitted): Promise<void> {
    options.metrics?.startStage("queued_to_launched", admitted.runtime, admitted.queueWaitMs);
    if (!options.tracer) return launchTraced(admitted);
    // The run's trace: its wait in the queue, ending now, then the launch.
    const run = contextFromTraceContext(admitted.traceContext);
    const attributes = runAttributes({ runId: admitted.runId, attempt: admitted.attempt, runtime: admitted.runtime, repositoryUrl: admitted.repositoryUrl });
    const now = Date.now();
    options.tracer
      .startSpan("corral.admission", { startTime: now - admitted.queueWaitMs, attributes: { ...attributes, "corral.queue_wait_ms": Math.round(admitted.queueWaitMs) } }, run)
      .end(now);
    return inSpan(options.tracer, "corral.runtime.launch", { parent: run, kind: SpanKind.INTERNAL, attributes }, () => launchTraced(admitted));
  }

  async function launchTraced(admitted: Admitted): Promise<void> {
    const log = logger.child({ runId: admitted.runId, attempt: admitted.attempt, runtime: admitted.runtime });
    const backend = options.runtimes.get(admitted.runtime);
    if (!backend) {
      await options.onLaunchFailed(admitted.runId, admitted.attempt, `runtime "${admitted.runtime}" is not enabled on this scheduler`);
      return;
    }
    try {
      const handle = await backend.launch({
        runId: admitted.runId,
        attempt: admitted.attempt,
        credential: admitted.credential,
        controlPlaneUrl: options.controlPlaneUrl,
        limits: admitted.limits,
        timeouts: admitted.timeouts,
        traceContext: traceContextOf(context.active()),
      });
      await recordHandle(admitted.runId, admitted.attempt, handle);
      log.info("launched");
    } catch (error) {
      log.error({ err: error }, "launch failed");
      await options.onLaunchFailed(admitted.runId, admitted.attempt, `launch failed: ${(error as Error).message}`);
    }
  }

  async function drain(): Promise<void> {
    do {
      again = false;
      for (;;) {
        if (closed) break;
        const admitted = await admitBatch();
        if (admitted.length === 0) break;
        // A batch's launches go together: a runtime's API calls overlap, and none waits on another.
        await Promise.all(admitted.map((run) => launch(run)));
      }
    } while (again && !closed);
    running = undefined;
  }

  return {
    /** Launches what the limits allow now; coalesces calls made while it runs. */
    kick(): Promise<void> {
      if (closed) return Promise.resolve();
      if (running) {
        again = true;
        return running;
      }
      running = drain().catch((error: unknown) => {
        running = undefined;
        logger.error({ err: error }, "dispatch failed; retrying at the next kick");
      });
      return running;
    },
    /**
     * Admits nothing more and waits for the launches under way to record their handles: a
     * scheduler stopping between starting a sandbox and recording it would leave its successor
     * a run whose sandbox it cannot find.
     */
    async close(timeoutMs = 30_000): Promise<void> {
      closed = true;
      if (!running) return;
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
      // A launch stuck in its runtime's API must not hold the shutdown for ever; the reconciler of
      // the next scheduler handles what it leaves (a sandbox with no handle times out).
      if (await Promise.race([running.then(() => false), gaveUp])) logger.warn({ timeoutMs }, "stopping with launches still under way");
      clearTimeout(timer);
    },
  };
}
