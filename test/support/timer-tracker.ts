/**
 * Remembers the timers made through the global setTimeout/setInterval, so that a run which ends
 * held open by timers can say whose they are (their callback's source): Node's own list of
 * active resources gives only "Timeout". Timers that ran or were cleared are pruned as it goes.
 */
type Timer = NodeJS.Timeout & { _destroyed?: boolean; _onTimeout?: () => unknown; _repeat?: number | null };

const timers = new Set<Timer>();

export function trackTimers(): void {
  for (const name of ["setTimeout", "setInterval"] as const) {
    const original = globalThis[name] as (...args: unknown[]) => Timer;
    const tracked = (...args: unknown[]) => {
      const timer = original(...args);
      timers.add(timer);
      if (timers.size > 20_000) for (const t of timers) if (t._destroyed || !t.hasRef()) timers.delete(t);
      return timer;
    };
    Object.defineProperties(tracked, Object.getOwnPropertyDescriptors(original));
    (globalThis as Record<string, unknown>)[name] = tracked;
  }
}

/** The timers that still hold the process open: interval or delay, and where their callback comes from. */
export function timersHoldingTheProcess(): string[] {
  const held: string[] = [];
  for (const timer of timers) {
    if (timer._destroyed || !timer.hasRef()) continue;
    const source = String(timer._onTimeout ?? "").replace(/\s+/g, " ").slice(0, 160);
    held.push(`${timer._repeat ? `every ${timer._repeat} ms` : "once"}: ${source}`);
  }
  return held;
}
