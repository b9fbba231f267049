import { sweepRetention, type RetentionDeps, type SweepReport } from "./sweep-retention.ts";

export interface RetentionSweeper {
  /** Runs a pass now, or joins the one under way. */
  sweep(): Promise<SweepReport>;
  /** Ends the timer and the pass under way (at its next step), and waits for it. */
  stop(): Promise<void>;
}

/**
 * Runs a retention pass at start-up and then `intervalMs` after each pass ends (never two at
 * once in a process; replicas coordinate through row and advisory locks, see sweepRetention).
 * A failed pass is logged and retried at the next tick.
 */
export function createRetentionSweeper(deps: Omit<RetentionDeps, "signal"> & { intervalMs: number }): RetentionSweeper {
  const abort = new AbortController();
  let running: Promise<SweepReport> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const sweep = (): Promise<SweepReport> => {
    running ??= sweepRetention({ ...deps, signal: abort.signal }).finally(() => {
      running = undefined;
    });
    return running;
  };

  const tick = () => {
    timer = undefined;
    void sweep()
      .catch((error: unknown) => deps.logger.warn({ err: error }, "retention sweep failed; trying again at the next interval"))
      .finally(() => {
        if (!abort.signal.aborted) timer = setTimeout(tick, deps.intervalMs).unref();
      });
  };
  tick();

  return {
    sweep,
    async stop() {
      abort.abort();
      if (timer) clearTimeout(timer);
      await running?.catch(() => {});
    },
  };
}
