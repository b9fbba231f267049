/**
 * Histogram buckets, in seconds, for latencies from milliseconds (a warm agent attaching) to
 * minutes (a queued run, an image pull).
 */
export const LATENCY_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
