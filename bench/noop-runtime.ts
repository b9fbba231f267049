import type { RuntimeBackend } from "../services/scheduler/src/runtime/runtime-backend.ts";

/**
 * BENCH ONLY: a runtime backend that launches nothing. It stands in for the local runtime
 * (same name, so runs need no other spec) and reports every sandbox as running, so the figure
 * it serves is the scheduler's own cost of admitting and launching, with no process, container
 * or pod behind it. Never used outside bench/.
 */
export function createBenchNoopRuntime(): RuntimeBackend & { readonly launched: number } {
  let launched = 0;
  return {
    name: "local",
    get launched() {
      return launched;
    },
    preflight: async () => ({ ok: true, message: "bench no-op runtime: launches nothing" }),
    launch: async () => {
      launched += 1;
      return {};
    },
    observe: async () => ({ fact: "running", detail: "bench no-op runtime" }),
    terminate: async () => {},
    cleanup: async () => {},
    onFact: () => {},
    close: async () => {},
  };
}
