/**
 * Names and labels of an attempt's Kubernetes objects.
 *
 * Names are derived from the full run id and the attempt, never from a truncated or hashed
 * id: two attempts can then never share a name (the seed truncated ids, and collided). A run
 * id is a lowercase uuid, which is already DNS-1123, so `corral-<uuid>-<attempt>` is a valid
 * name of at most 7 + 36 + 1 + 10 = 54 characters, and the Secret's `-cred` suffix keeps
 * it within 63 even for the largest attempt number (a property test checks both).
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_ATTEMPT = 2 ** 32 - 1;

export const LABELS = {
  name: "app.kubernetes.io/name",
  component: "app.kubernetes.io/component",
  instance: "app.kubernetes.io/instance",
  managedBy: "app.kubernetes.io/managed-by",
  partOf: "app.kubernetes.io/part-of",
  runId: "corral.dev/run-id",
  attempt: "corral.dev/attempt",
} as const;

/** Selects every object this backend creates, and nothing else. */
export const MANAGED_SELECTOR = `${LABELS.managedBy}=corral-scheduler,${LABELS.component}=agent`;

function checked(runId: string, attempt: number): string {
  if (!UUID.test(runId)) throw new Error(`run id ${JSON.stringify(runId)} is not a lowercase uuid`);
  if (!Number.isInteger(attempt) || attempt < 1 || attempt > MAX_ATTEMPT) throw new Error(`attempt ${attempt} is out of range`);
  return `corral-${runId}-${attempt}`;
}

export function jobName(runId: string, attempt: number): string {
  return checked(runId, attempt);
}

export function secretName(runId: string, attempt: number): string {
  return `${checked(runId, attempt)}-cred`;
}

export function sandboxLabels(runId: string, attempt: number): Record<string, string> {
  return {
    [LABELS.name]: "corral-agent",
    [LABELS.component]: "agent",
    [LABELS.partOf]: "corral",
    [LABELS.managedBy]: "corral-scheduler",
    [LABELS.instance]: jobName(runId, attempt),
    [LABELS.runId]: runId,
    [LABELS.attempt]: String(attempt),
  };
}

/** The attempt a Job name was derived from; undefined for a name this backend does not make. */
export function attemptOfJobName(name: string): { runId: string; attempt: number } | undefined {
  const match = /^corral-([0-9a-f-]{36})-(\d+)$/.exec(name);
  if (!match || !UUID.test(match[1]!)) return undefined;
  const attempt = Number(match[2]);
  return attempt >= 1 && attempt <= MAX_ATTEMPT ? { runId: match[1]!, attempt } : undefined;
}

/** The attempt an object belongs to, from its labels; undefined for anything else. */
export function attemptOf(labels: Record<string, string> | undefined): { runId: string; attempt: number } | undefined {
  const runId = labels?.[LABELS.runId];
  const attempt = Number(labels?.[LABELS.attempt]);
  if (!runId || !UUID.test(runId) || !Number.isInteger(attempt) || attempt < 1) return undefined;
  return { runId, attempt };
}
