import type { V1Container, V1Job, V1PodSpec, V1PodTemplateSpec, V1ResourceRequirements, V1Secret } from "@kubernetes/client-node";
import type { LaunchRequest } from "../runtime-backend.ts";
import { jobName, sandboxLabels, secretName } from "./sandbox-names.ts";

/** How agent pods look; compiled once from the scheduler's configuration. */
export interface SandboxShape {
  namespace: string;
  image: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  imagePullSecrets: readonly string[];
  serviceAccountName?: string;
  /** How long a finished Job (and, through its owner reference, its Secret) stays for inspection. */
  ttlSecondsAfterFinished: number;
  /** What a run spec that sets no limit gets. */
  defaults: { cpuMillis: number; memoryBytes: number; diskBytes: number };
  /** A PodTemplate whose pod shape (node selector, tolerations, sidecars, annotations…) agent pods start from. */
  podTemplate?: V1PodTemplateSpec;
  /** Extra environment of every agent (log level). Never a secret. */
  agentEnv: Readonly<Record<string, string>>;
}

export const AGENT_CONTAINER = "agent";
export const WORK_DIR = "/workspace";
const CREDENTIAL_DIR = "/var/run/corral/credential";
const CREDENTIAL_KEY = "token";
// The image's non-root user (deploy/docker/agent.Dockerfile).
const AGENT_UID = 10001;
// Time for scheduling, image pull and clone start-up before the run's own budget starts.
const START_UP_ALLOWANCE_S = 300;

/**
 * The attempt's credential Secret. Created before the Job so the pod never waits for it, then
 * owner-referenced to the Job once the Job exists, so the garbage collector removes it with the
 * Job; a Secret orphaned by a crash in between is found by its labels and deleted by the
 * reconciler.
 */
export function credentialSecret(shape: SandboxShape, request: LaunchRequest): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: secretName(request.runId, request.attempt), namespace: shape.namespace, labels: sandboxLabels(request.runId, request.attempt) },
    type: "Opaque",
    immutable: true,
    stringData: { [CREDENTIAL_KEY]: `${request.credential}\n` },
  };
}

export function agentJob(shape: SandboxShape, request: LaunchRequest): V1Job {
  const labels = sandboxLabels(request.runId, request.attempt);
  const template = structuredClone(shape.podTemplate ?? {});
  const graceSeconds = Math.max(1, Math.ceil(request.timeouts.graceMs / 1000));
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: jobName(request.runId, request.attempt), namespace: shape.namespace, labels },
    spec: {
      // A failed attempt is reported, not retried behind Corral's back: RetryRun makes a new attempt.
      backoffLimit: 0,
      activeDeadlineSeconds: Math.ceil(request.timeouts.runMs / 1000) + graceSeconds + START_UP_ALLOWANCE_S,
      ttlSecondsAfterFinished: shape.ttlSecondsAfterFinished,
      template: {
        metadata: {
          ...template.metadata,
          labels: { ...template.metadata?.labels, ...labels },
        },
        spec: podSpec(shape, request, template.spec, graceSeconds),
      },
    },
  };
}

function podSpec(shape: SandboxShape, request: LaunchRequest, base: V1PodSpec | undefined, graceSeconds: number): V1PodSpec {
  const others = (base?.containers ?? []).filter((c) => c.name !== AGENT_CONTAINER);
  const agentBase = base?.containers?.find((c) => c.name === AGENT_CONTAINER);
  return {
    ...base,
    restartPolicy: "Never",
    // The agent talks to Corral, never to the Kubernetes API.
    automountServiceAccountToken: false,
    terminationGracePeriodSeconds: graceSeconds,
    serviceAccountName: shape.serviceAccountName ?? base?.serviceAccountName,
    imagePullSecrets: [...(base?.imagePullSecrets ?? []), ...shape.imagePullSecrets.map((name) => ({ name }))],
    securityContext: {
      ...base?.securityContext,
      runAsNonRoot: true,
      runAsUser: base?.securityContext?.runAsUser ?? AGENT_UID,
      runAsGroup: base?.securityContext?.runAsGroup ?? AGENT_UID,
      fsGroup: base?.securityContext?.fsGroup ?? AGENT_UID,
      seccompProfile: { type: "RuntimeDefault" },
    },
    containers: [agentContainer(shape, request, agentBase), ...others],
    volumes: [
      ...(base?.volumes ?? []),
      { name: "workspace", emptyDir: { sizeLimit: String(request.limits.diskBytes ?? shape.defaults.diskBytes) } },
      { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
      {
        name: "credential",
        secret: { secretName: secretName(request.runId, request.attempt), defaultMode: 0o400, items: [{ key: CREDENTIAL_KEY, path: CREDENTIAL_KEY }] },
      },
    ],
  };
}

function agentContainer(shape: SandboxShape, request: LaunchRequest, base: V1Container | undefined): V1Container {
  const env: Record<string, string> = {
    ...shape.agentEnv,
    CORRAL_CONTROL_PLANE_URL: request.controlPlaneUrl,
    CORRAL_RUN_ID: request.runId,
    CORRAL_ATTEMPT: String(request.attempt),
    CORRAL_WORK_DIR: WORK_DIR,
    CORRAL_CREDENTIAL_FILE: `${CREDENTIAL_DIR}/${CREDENTIAL_KEY}`,
    // The root filesystem is read-only; git and the agent's tools need a writable home.
    HOME: "/tmp",
    TMPDIR: "/tmp",
    // The launch's trace context, so the agent's first Attach call joins the run's trace.
    ...(request.traceContext ? { TRACEPARENT: request.traceContext.traceparent, TRACESTATE: request.traceContext.tracestate } : {}),
  };
  const ours = new Set(Object.keys(env));
  return {
    ...base,
    name: AGENT_CONTAINER,
    image: base?.image ?? shape.image,
    imagePullPolicy: base?.imagePullPolicy ?? shape.imagePullPolicy,
    env: [...(base?.env ?? []).filter((e) => !ours.has(e.name)), ...Object.entries(env).map(([name, value]) => ({ name, value }))],
    resources: resources(shape, request, base?.resources),
    securityContext: {
      ...base?.securityContext,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    volumeMounts: [
      ...(base?.volumeMounts ?? []),
      { name: "workspace", mountPath: WORK_DIR },
      { name: "tmp", mountPath: "/tmp" },
      { name: "credential", mountPath: CREDENTIAL_DIR, readOnly: true },
    ],
  };
}

/**
 * Requests equal limits (Guaranteed QoS for memory), so an agent is never the first one evicted
 * under memory pressure for using what it was promised. The run spec wins over the pod
 * template, which wins over the scheduler's defaults. Kubernetes has no per-pod process limit
 * in the pod spec (it is the kubelet's podPidsLimit), so `limits.pids` is not applied here.
 */
function resources(shape: SandboxShape, request: LaunchRequest, base: V1ResourceRequirements | undefined): V1ResourceRequirements {
  const cpu = request.limits.cpuMillis ? `${request.limits.cpuMillis}m` : (base?.limits?.cpu ?? `${shape.defaults.cpuMillis}m`);
  const memory = request.limits.memoryBytes ? String(request.limits.memoryBytes) : (base?.limits?.memory ?? String(shape.defaults.memoryBytes));
  return {
    requests: { ...base?.requests, cpu: request.limits.cpuMillis ? cpu : (base?.requests?.cpu ?? cpu), memory },
    limits: { ...base?.limits, cpu, memory },
  };
}
