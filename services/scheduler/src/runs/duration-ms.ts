import type { Duration } from "@bufbuild/protobuf/wkt";

// The range google.protobuf.Duration allows: about 10,000 years either way.
const maxDurationSeconds = 315_576_000_000n;
const maxNanos = 999_999_999;

export type DurationReading = { ms: number } | { problem: string };

/**
 * A Duration that must be positive, in milliseconds. A Duration that breaks the proto's own
 * rules (nanos out of range, seconds and nanos of opposite signs) is refused rather than
 * guessed at. Sub-millisecond remainders round up, so a positive duration never becomes 0 ms.
 */
export function positiveDurationMs(duration: Duration): DurationReading {
  const seconds = BigInt(duration.seconds);
  const nanos = duration.nanos;
  const valid =
    Number.isInteger(nanos) &&
    Math.abs(nanos) <= maxNanos &&
    seconds >= -maxDurationSeconds &&
    seconds <= maxDurationSeconds &&
    !(seconds > 0n && nanos < 0) &&
    !(seconds < 0n && nanos > 0);
  if (!valid) return { problem: "is not a valid Duration (nanos out of range or of the opposite sign to seconds)" };
  if (seconds < 0n || (seconds === 0n && nanos <= 0)) return { problem: "must be positive" };
  // Exact: 315,576,000,000,000 ms is far below Number.MAX_SAFE_INTEGER.
  return { ms: Number(seconds) * 1000 + Math.ceil(nanos / 1_000_000) };
}
