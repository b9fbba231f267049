/**
 * Names and labels of an attempt's container.
 *
 * The name is derived from the full run id and the attempt (`corral-<uuid>-<attempt>`), so two
 * attempts never share one, and a launch retried after a crash finds the container it made
 * before (the engine refuses a second container of the same name). Labels carry the same
 * identity for the event stream's filter and for orphan collection after a restart. The scope
 * label keeps installations that share one engine apart: each takes only its own containers
 * for orphans (what a namespace does for the kubernetes runtime).
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_ATTEMPT = 2 ** 32 - 1;

export const LABELS = {
  managedBy: "corral.dev/managed-by",
  component: "corral.dev/component",
  scope: "corral.dev/scope",
  runId: "corral.dev/run-id",
  attempt: "corral.dev/attempt",
} as const;

export const MANAGED_BY = "corral-scheduler";

/** The engine's label filter for every container this backend creates in a scope, and nothing else. */
export function managedFilter(scope: string): string[] {
  return [`${LABELS.managedBy}=${MANAGED_BY}`, `${LABELS.component}=agent`, `${LABELS.scope}=${scope}`];
}

export function containerName(runId: string, attempt: number): string {
  if (!UUID.test(runId)) throw new Error(`run id ${JSON.stringify(runId)} is not a lowercase uuid`);
  if (!Number.isInteger(attempt) || attempt < 1 || attempt > MAX_ATTEMPT) throw new Error(`attempt ${attempt} is out of range`);
  return `corral-${runId}-${attempt}`;
}

export function containerLabels(runId: string, attempt: number, scope: string): Record<string, string> {
  containerName(runId, attempt);
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.component]: "agent",
    [LABELS.scope]: scope,
    [LABELS.runId]: runId,
    [LABELS.attempt]: String(attempt),
  };
}

/** The attempt a container of the scope belongs to, from its labels; undefined for any other container. */
export function attemptOf(labels: Record<string, string> | null | undefined, scope: string): { runId: string; attempt: number } | undefined {
  if (labels?.[LABELS.managedBy] !== MANAGED_BY || labels[LABELS.component] !== "agent" || labels[LABELS.scope] !== scope) return undefined;
  const runId = labels[LABELS.runId];
  const attempt = Number(labels[LABELS.attempt]);
  if (!runId || !UUID.test(runId) || !Number.isInteger(attempt) || attempt < 1 || attempt > MAX_ATTEMPT) return undefined;
  return { runId, attempt };
}
