/**
 * How many fuzz cases run. CORRAL_FUZZ_RUNS is the total across every RPC of the three services
 * (CI sets it to 100000: .ci/run); the default keeps `npm test` within a couple of minutes on two
 * cores. Each RPC gets an equal share, split between its properties.
 */
export const RPC_COUNT = 13;
const DEFAULT_TOTAL = 2600;

export const totalFuzzRuns = Number(process.env.CORRAL_FUZZ_RUNS ?? DEFAULT_TOTAL);
if (!Number.isSafeInteger(totalFuzzRuns) || totalFuzzRuns < RPC_COUNT) throw new Error(`CORRAL_FUZZ_RUNS must be an integer of at least ${RPC_COUNT}`);

/** Cases for one property of one RPC that has `properties` properties. */
export function runsFor(properties: number): number {
  return Math.max(1, Math.ceil(totalFuzzRuns / RPC_COUNT / properties));
}

const counts = new Map<string, number>();

/** Counts one case that ran against a server. */
export function countCase(rpc: string): void {
  counts.set(rpc, (counts.get(rpc) ?? 0) + 1);
}

/** Prints the cases that ran since the last report, per RPC, and the total in this process, so the figure in a CI log is the one that ran. */
export function reportCases(title: string): void {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const rows = [...counts].filter(([rpc, n]) => n !== reported.get(rpc)).map(([rpc, n]) => `${rpc} ${n - (reported.get(rpc) ?? 0)}`);
  for (const [rpc, n] of counts) reported.set(rpc, n);
  console.log(`      fuzz ${title}: ${rows.join(", ")}; ${total} cases in all so far (CORRAL_FUZZ_RUNS=${totalFuzzRuns})`);
}

const reported = new Map<string, number>();
