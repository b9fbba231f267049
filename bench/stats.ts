/** Percentile of a sample, nearest-rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface Figure {
  /** What was measured, such as "cancel latency p99". */
  name: string;
  value: number;
  unit: string;
  /** The baseline measured in the same run, when there is one. */
  baseline?: { name: string; value: number };
  /** The target, as a ratio or an absolute bound, and whether it was met. */
  target?: { text: string; met: boolean };
}

export function printTable(figures: Figure[]): void {
  const rows = figures.map((f) => [
    f.name,
    `${round(f.value)} ${f.unit}`,
    f.baseline ? `${f.baseline.name}: ${round(f.baseline.value)} ${f.unit}` : "",
    f.baseline ? `${round(f.value / f.baseline.value)}×` : "",
    f.target ? `${f.target.met ? "met" : "MISSED"} (${f.target.text})` : "",
  ]);
  const header = ["figure", "value", "baseline (same run)", "ratio", "target"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, widths.map((w) => "-".repeat(w)), ...rows]) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
}

const round = (n: number) => (Math.abs(n) >= 100 ? Math.round(n).toString() : n.toPrecision(3));
