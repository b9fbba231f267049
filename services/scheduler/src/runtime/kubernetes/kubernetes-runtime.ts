import { BatchV1Api, CoreV1Api, type KubeConfig, type V1Job, type V1Pod } from "@kubernetes/client-node";
import type { Logger } from "@corral/plumbing/logger.ts";
import type { CleanupStep, FactListener, LaunchRequest, Observation, RuntimeBackend, RuntimeHandle } from "../runtime-backend.ts";
import { isAlreadyExists, isNotFound, kubeErrorMessage } from "./kube-errors.ts";
import { preflightKubernetes } from "./preflight-kubernetes.ts";
import { agentJob, AGENT_CONTAINER, credentialSecret, type SandboxShape } from "./sandbox-manifests.ts";
import { sandboxFact } from "./sandbox-facts.ts";
import { attemptOf, attemptOfJobName, jobName, LABELS, MANAGED_SELECTOR, secretName } from "./sandbox-names.ts";
import { watchObjects, type WatchedObjects } from "./watched-objects.ts";

export interface KubernetesRuntimeOptions {
  /** Loaded on first use only, so a scheduler without this runtime never reads a kubeconfig. */
  loadKubeConfig: () => KubeConfig;
  shape: SandboxShape;
  /** The control-plane URL agent pods reach; empty fails preflight. */
  controlPlaneUrl: string;
  logger: Logger;
  /** Longest diagnostics kept from a sandbox whose agent never attached. */
  diagnosticsBytes?: number;
  /** How long a fact may wait for the watch caches to fill before it reads "running". */
  syncTimeoutMs?: number;
}

interface Clients {
  kubeConfig: KubeConfig;
  batch: BatchV1Api;
  core: CoreV1Api;
  jobs: WatchedObjects<V1Job>;
  pods: WatchedObjects<V1Pod>;
}

const EVENT_REASONS: Record<CleanupStep, string> = {
  cancel_requested: "CorralCancelRequested",
  grace_elapsed: "CorralGraceElapsed",
  force_deleted: "CorralForceDeleted",
  finalized: "CorralFinalized",
  objects_deleted: "CorralObjectsDeleted",
  artifacts_kept: "CorralArtifactsKept",
};

/**
 * Runs each attempt as a Kubernetes Job with its credential in a Secret owned by the Job.
 * Facts come from two watch caches (Jobs and pods carrying Corral's labels); launch and
 * deletion treat AlreadyExists and NotFound as the idempotent outcomes they are, so a retried
 * launch or a second cleanup is harmless.
 */
export function createKubernetesRuntime(options: KubernetesRuntimeOptions): RuntimeBackend {
  const { shape, logger } = options;
  const namespace = shape.namespace;
  const listeners: FactListener[] = [];
  let clients: Clients | undefined;
  // The last fact reported per attempt, so a watch's many updates give one edge per change.
  const reported = new Map<string, string>();

  function connect(): Clients {
    if (clients) return clients;
    const kubeConfig = options.loadKubeConfig();
    const batch = kubeConfig.makeApiClient(BatchV1Api);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const onChange = (object: V1Job | V1Pod) => {
      const owner = attemptOf(object.metadata?.labels);
      if (owner) report(owner.runId, owner.attempt);
    };
    const jobs = watchObjects<V1Job>({
      kubeConfig,
      path: `/apis/batch/v1/namespaces/${namespace}/jobs`,
      list: () => batch.listNamespacedJob({ namespace, labelSelector: MANAGED_SELECTOR }),
      labelSelector: MANAGED_SELECTOR,
      namespace,
      logger,
      onChange,
    });
    const pods = watchObjects<V1Pod>({
      kubeConfig,
      path: `/api/v1/namespaces/${namespace}/pods`,
      list: () => core.listNamespacedPod({ namespace, labelSelector: MANAGED_SELECTOR }),
      labelSelector: MANAGED_SELECTOR,
      namespace,
      logger,
      onChange,
    });
    clients = { kubeConfig, batch, core, jobs, pods };
    return clients;
  }

  function podsOf(c: Clients, runId: string, attempt: number): V1Pod[] {
    const name = jobName(runId, attempt);
    return c.pods.list().filter((pod) => pod.metadata?.labels?.[LABELS.instance] === name);
  }

  function factFromCache(c: Clients, runId: string, attempt: number): Observation {
    return sandboxFact(c.jobs.get(jobName(runId, attempt)), podsOf(c, runId, attempt));
  }

  function report(runId: string, attempt: number): void {
    if (!clients) return;
    const { fact, detail } = factFromCache(clients, runId, attempt);
    const key = `${runId}/${attempt}`;
    if (fact === "running" || reported.get(key) === fact) return;
    reported.set(key, fact);
    for (const listener of listeners) listener(runId, attempt, fact, detail);
  }

  async function synced(c: Clients): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), options.syncTimeoutMs ?? 10_000)));
    try {
      return await Promise.race([Promise.all([c.jobs.synced, c.pods.synced]).then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function deleteJob(c: Clients, name: string, gracePeriodSeconds?: number): Promise<boolean> {
    try {
      // Background propagation: the pods go too. Without it they would be orphaned and run on.
      // In the body: the apiserver ignores query options when a request has one.
      await c.batch.deleteNamespacedJob({ name, namespace, body: { propagationPolicy: "Background", gracePeriodSeconds } });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw new Error(`deleting Job ${namespace}/${name}: ${kubeErrorMessage(error)}`, { cause: error });
    }
  }

  async function deleteSecret(c: Clients, name: string): Promise<void> {
    try {
      await c.core.deleteNamespacedSecret({ name, namespace });
    } catch (error) {
      if (!isNotFound(error)) throw new Error(`deleting Secret ${namespace}/${name}: ${kubeErrorMessage(error)}`, { cause: error });
    }
  }

  async function note(runId: string, attempt: number, step: CleanupStep, message: string): Promise<void> {
    const c = connect();
    const name = jobName(runId, attempt);
    const now = new Date();
    try {
      await c.core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${name}.`, namespace, labels: { [LABELS.runId]: runId, [LABELS.attempt]: String(attempt) } },
          involvedObject: { apiVersion: "batch/v1", kind: "Job", name, namespace },
          reason: EVENT_REASONS[step],
          message,
          type: "Normal",
          source: { component: "corral-scheduler" },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (error) {
      // An Event is for people looking; losing one must not stop a cleanup.
      logger.warn({ runId, attempt, step, err: error }, "could not record a Kubernetes Event");
    }
  }

  return {
    name: "kubernetes",

    async preflight(signal) {
      try {
        const c = connect();
        return await preflightKubernetes({ kubeConfig: c.kubeConfig, batch: c.batch, shape, controlPlaneUrl: options.controlPlaneUrl, signal });
      } catch (error) {
        return { ok: false, message: `kubernetes: ${kubeErrorMessage(error)}` };
      }
    },

    async launch(request: LaunchRequest): Promise<RuntimeHandle> {
      const c = connect();
      // Pods reach the control plane at the runtime's own URL (a Service name), not the
      // scheduler's (often a loopback address).
      const job = agentJob(shape, { ...request, controlPlaneUrl: options.controlPlaneUrl || request.controlPlaneUrl });
      const name = job.metadata!.name!;
      let created: V1Job;
      try {
        created = await c.batch.createNamespacedJob({ namespace, body: job });
      } catch (error) {
        // A launch retried after a crash: the Job is the one we made before.
        if (!isAlreadyExists(error)) throw new Error(`creating Job ${namespace}/${name}: ${kubeErrorMessage(error)}`, { cause: error });
        created = await c.batch.readNamespacedJob({ name, namespace });
      }
      // After the Job, so that it can be created already owned by it: the scheduler needs no
      // right to read or patch Secrets. The pod waits for its volume until then.
      const secret = credentialSecret(shape, request);
      secret.metadata!.ownerReferences = [
        { apiVersion: "batch/v1", kind: "Job", name, uid: created.metadata!.uid!, controller: false, blockOwnerDeletion: false },
      ];
      try {
        await c.core.createNamespacedSecret({ namespace, body: secret });
      } catch (error) {
        if (!isAlreadyExists(error)) {
          await deleteJob(c, name, 0).catch(() => undefined);
          throw new Error(`creating Secret ${namespace}/${secret.metadata!.name}: ${kubeErrorMessage(error)}`, { cause: error });
        }
      }
      logger.info({ runId: request.runId, attempt: request.attempt, job: name, namespace }, "kubernetes Job created");
      return { namespace, jobName: name };
    },

    async observe(runId, attempt) {
      const c = connect();
      if (!(await synced(c))) return { fact: "running", detail: "the Kubernetes API has not answered yet; no fact" };
      return factFromCache(c, runId, attempt);
    },

    async terminate(handle, graceMs) {
      const c = connect();
      const name = handle.jobName;
      if (!name) return;
      // The pods' own grace period applies to a polite stop; 0 forces it.
      const deleted = await deleteJob(c, name, graceMs <= 0 ? 0 : Math.ceil(graceMs / 1000));
      const attempt = attemptOfJobName(name);
      if (deleted && graceMs <= 0 && attempt) await note(attempt.runId, attempt.attempt, "force_deleted", `Job ${name} deleted with its pods, grace period 0`);
    },

    async cleanup(runId, attempt) {
      const c = connect();
      const name = jobName(runId, attempt);
      const jobDeleted = await deleteJob(c, name);
      // Normally gone with the Job already (owner reference); not if a crash left it unowned.
      await deleteSecret(c, secretName(runId, attempt));
      reported.delete(`${runId}/${attempt}`);
      await note(runId, attempt, "objects_deleted", jobDeleted ? `Job ${name} and Secret deleted` : `Secret of ${name} deleted; the Job was already gone`);
      await note(runId, attempt, "artifacts_kept", "the run's artifacts stay in the artifact service until retention removes them");
    },

    async diagnostics(runId, attempt) {
      const c = connect();
      const pod = podsOf(c, runId, attempt).find((p) => p.status?.containerStatuses?.some((s) => s.state?.terminated || s.state?.running));
      if (!pod?.metadata?.name) return undefined;
      try {
        const text = await c.core.readNamespacedPodLog({
          name: pod.metadata.name,
          namespace,
          container: AGENT_CONTAINER,
          limitBytes: options.diagnosticsBytes ?? 16 * 1024,
        });
        return text.trim() || undefined;
      } catch (error) {
        logger.warn({ runId, attempt, err: error }, "could not read the pod's log for diagnostics");
        return undefined;
      }
    },

    note,

    async listSandboxes() {
      const c = connect();
      if (!(await synced(c))) return [];
      return c.jobs.list().flatMap((job) => {
        const owner = attemptOf(job.metadata?.labels);
        return owner ? [{ ...owner, handle: { namespace, jobName: job.metadata!.name! } }] : [];
      });
    },

    onFact(listener) {
      listeners.push(listener);
    },

    async close() {
      if (!clients) return;
      await Promise.all([clients.jobs.stop(), clients.pods.stop()]);
      clients = undefined;
    },
  };
}
