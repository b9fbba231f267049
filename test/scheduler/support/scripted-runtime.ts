import type { RuntimeBackend, RuntimeFact } from "@corral/scheduler/runtime/runtime-backend.ts";

/**
 * A scripted runtime, named as the fake it is: the reconciler under test is real (real SQL on a
 * real database); only the sandbox is replaced, so that facts arrive exactly when the test says.
 * Real processes are covered by test/e2e. Like the real backends, it knows nothing of a sandbox
 * whose handle it is not given, unless `factsWithoutHandle` says otherwise.
 */
export function createScriptedRuntime(options: { factsWithoutHandle?: boolean } = {}) {
  const facts = new Map<string, RuntimeFact>();
  const backend: RuntimeBackend = {
    name: "local",
    preflight: async () => ({ ok: true, message: "scripted" }),
    launch: async () => ({ pid: 1 }),
    observe: async (runId, _attempt, handle) =>
      handle || options.factsWithoutHandle
        ? { fact: facts.get(runId) ?? "running", detail: "" }
        : { fact: "missing", detail: "the agent process was never started" },
    terminate: async () => {},
    cleanup: async () => {},
    onFact: () => {},
    close: async () => {},
  };
  return { backend, set: (runId: string, fact: RuntimeFact) => facts.set(runId, fact) };
}
