/** Milliseconds of a protobuf JSON duration such as "3600s" or "1.500s"; undefined if absent or malformed. */
export function durationJsonMs(value: string | null | undefined): number | undefined {
  const match = value ? /^(\d+(?:\.\d+)?)s$/.exec(value) : null;
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}
