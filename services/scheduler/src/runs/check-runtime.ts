import { Runtime } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { RuntimeName, SchedulerDefaults } from "./validated-submission.ts";
import type { Violations } from "./violations.ts";

const runtimeNames = new Map<number, RuntimeName>([
  [Runtime.LOCAL, "local"],
  [Runtime.DOCKER, "docker"],
  [Runtime.KUBERNETES, "kubernetes"],
]);

/** Resolves the request's runtime: unspecified takes the default; it must be enabled here. */
export function checkRuntime(runtime: number, defaults: SchedulerDefaults, violations: Violations): RuntimeName {
  const name = runtime === Runtime.UNSPECIFIED ? defaults.runtime : runtimeNames.get(runtime);
  if (name === undefined) {
    violations.add("runtime", `unknown runtime ${runtime}; known: ${[...runtimeNames.values()].join(", ")}`);
    return defaults.runtime;
  }
  if (!defaults.enabledRuntimes.includes(name)) {
    const enabled = defaults.enabledRuntimes.length === 0 ? "none" : defaults.enabledRuntimes.join(", ");
    violations.add("runtime", `runtime ${name} is not enabled on this scheduler; enabled: ${enabled}`);
  }
  return name;
}
