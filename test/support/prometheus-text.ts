/** One sample of the Prometheus text exposition format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
const TYPES = ["counter", "gauge", "histogram", "summary", "untyped"];

/**
 * Parses the Prometheus text format (0.0.4) strictly: a line that is not a comment, a HELP or TYPE
 * line or a well-formed sample throws, naming it; every sample must belong to a family whose
 * TYPE was declared before it, and a histogram must have its _bucket (with le="+Inf"), _sum and
 * _count series. What Prometheus would refuse to scrape, this refuses to parse.
 */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((line, index) => {
    const where = `line ${index + 1} "${line}"`;
    if (line.startsWith("#")) {
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (meta?.[1] === "TYPE") {
        if (!new RegExp(`^${NAME}$`).test(meta[2]!) || !TYPES.includes(meta[3]!)) throw new Error(`bad TYPE at ${where}`);
        if (types.has(meta[2]!)) throw new Error(`TYPE declared twice at ${where}`);
        types.set(meta[2]!, meta[3]!);
      }
      return; // HELP, and any other comment
    }
    if (line.trim() === "") throw new Error(`empty ${where}`);
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`malformed sample at ${where}`);
    const [, name, labelText, valueText] = match;
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : valueText === "NaN" ? NaN : Number(valueText);
    if (Number.isNaN(value) && valueText !== "NaN") throw new Error(`bad value at ${where}`);
    const labels: Record<string, string> = {};
    if (labelText) {
      LABEL.lastIndex = 0;
      while (LABEL.lastIndex < labelText.length) {
        const label = LABEL.exec(labelText);
        if (!label) throw new Error(`malformed labels at ${where}`);
        labels[label[1]!] = label[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
      }
    }
    const family = [name!, name!.replace(/_(bucket|sum|count|total)$/, "")].find((n) => types.has(n));
    if (!family) throw new Error(`sample without a TYPE at ${where}`);
    if (types.get(family) === "histogram" && name!.endsWith("_bucket") && labels.le === undefined) throw new Error(`bucket without le at ${where}`);
    samples.push({ name: name!, labels, value });
  });
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const series = samples.filter((s) => s.name.startsWith(`${family}_`));
    if (series.length === 0) continue;
    for (const part of ["_sum", "_count"]) if (!series.some((s) => s.name === family + part)) throw new Error(`histogram ${family} has no ${part}`);
    if (!series.some((s) => s.name === `${family}_bucket` && s.labels.le === "+Inf")) throw new Error(`histogram ${family} has no +Inf bucket`);
  }
  return samples;
}

/** The sum of a metric's samples whose labels include `labels`; 0 when there are none. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}
