import type { Meter } from "@opentelemetry/api";

/** What the artifact service counts (Prometheus names: corral_*). */
export function createArtifactMetrics(meter: Meter) {
  const uploadBytes = meter.createCounter("corral_upload_bytes", { description: "Bytes of artifact uploads written to the blob store", unit: "By" });
  const stored = meter.createCounter("corral_artifacts_stored", { description: "Artifacts whose upload finished with a verified digest" });
  return {
    uploaded(bytes: number): void {
      uploadBytes.add(bytes);
    },
    stored(): void {
      stored.add(1);
    },
  };
}

export type ArtifactMetrics = ReturnType<typeof createArtifactMetrics>;
