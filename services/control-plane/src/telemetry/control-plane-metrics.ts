import type { Meter } from "@opentelemetry/api";

/** What the control plane counts (Prometheus names: corral_*). */
export function createControlPlaneMetrics(meter: Meter, streams: { readonly size: number }) {
  const ingested = meter.createCounter("corral_events_ingested", { description: "Run events stored from agents' streams" });
  const attaches = meter.createCounter("corral_attaches", { description: "Agent streams welcomed (first attaches and reconnects)" });
  meter
    .createObservableGauge("corral_attached_streams", { description: "Agent streams attached to this control plane now" })
    .addCallback((result) => result.observe(streams.size));
  return {
    eventsIngested(count: number): void {
      ingested.add(count);
    },
    attached(): void {
      attaches.add(1);
    },
  };
}

export type ControlPlaneMetrics = ReturnType<typeof createControlPlaneMetrics>;
