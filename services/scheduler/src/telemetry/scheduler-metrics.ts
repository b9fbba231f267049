import type { Meter } from "@opentelemetry/api";
import type { Sql } from "@corral/plumbing/db/sql.ts";
import { LATENCY_BUCKETS_SECONDS } from "@corral/plumbing/telemetry/latency-buckets.ts";

/** The start of a run, in the order it happens: each stage's latency is one label of one histogram. */
export type StartStage = "queued_to_launched" | "launched_to_attached" | "attached_to_first_event";

/** What the scheduler counts and times (Prometheus names: corral_*). */
export function createSchedulerMetrics(meter: Meter) {
  const finished = meter.createCounter("corral_runs_finished", { description: "Runs that reached a final status, by status and runtime" });
  const startLatency = meter.createHistogram("corral_run_start_latency_seconds", {
    description: "Start of a run, stage by stage: queued to launched (admission), launched to attached (the agent's start), attached to its first event",
    unit: "s",
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS_SECONDS },
  });
  const cancelLatency = meter.createHistogram("corral_run_cancel_latency_seconds", {
    description: "From a cancel request to the run being final (cancelled), for runs that had launched",
    unit: "s",
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS_SECONDS },
  });
  return {
    runFinished(status: string, runtime: string): void {
      finished.add(1, { status, runtime });
    },
    startStage(stage: StartStage, runtime: string, ms: number): void {
      if (Number.isFinite(ms) && ms >= 0) startLatency.record(ms / 1000, { stage, runtime });
    },
    cancelled(runtime: string, ms: number): void {
      if (Number.isFinite(ms) && ms >= 0) cancelLatency.record(ms / 1000, { runtime });
    },
  };
}

export type SchedulerMetrics = ReturnType<typeof createSchedulerMetrics>;

/**
 * Queue depth and runs in flight, read from PostgreSQL at each scrape, so that every scheduler
 * replica reports the same truth (what one replica admitted, another sees).
 */
export function observeRunCounts(meter: Meter, sql: Sql): void {
  const queued = meter.createObservableGauge("corral_queue_depth", { description: "Runs waiting for admission" });
  const active = meter.createObservableGauge("corral_runs_active", { description: "Runs launching, running or cancelling, by status" });
  meter.addBatchObservableCallback(
    async (result) => {
      const rows = await sql.all<{ status: string; n: string }>(
        "select status, count(*) as n from runs where status in ('queued', 'launching', 'running', 'cancelling') group by status",
      );
      const count = (status: string) => Number(rows.find((r) => r.status === status)?.n ?? 0);
      result.observe(queued, count("queued"));
      for (const status of ["launching", "running", "cancelling"]) result.observe(active, count(status), { status });
    },
    [queued, active],
  );
}
