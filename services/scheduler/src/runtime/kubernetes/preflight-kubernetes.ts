import { AuthorizationV1Api, VersionApi, type BatchV1Api, type KubeConfig } from "@kubernetes/client-node";
import { isForbidden, isNotFound, kubeErrorMessage } from "./kube-errors.ts";
import { agentJob, type SandboxShape } from "./sandbox-manifests.ts";

/** Every call the backend makes; the deploy/ Role grants exactly these. */
export const REQUIRED_ACCESS: readonly { group: string; resource: string; subresource?: string; verb: string }[] = [
  ...["create", "get", "list", "watch", "delete"].map((verb) => ({ group: "batch", resource: "jobs", verb })),
  ...["list", "watch"].map((verb) => ({ group: "", resource: "pods", verb })),
  { group: "", resource: "pods", subresource: "log", verb: "get" },
  // Create and delete only: the scheduler never reads a Secret, its own or anyone's.
  ...["create", "delete"].map((verb) => ({ group: "", resource: "secrets", verb })),
  { group: "", resource: "events", verb: "create" },
];

// A syntactically valid attempt, used only for the server-side dry run.
const PROBE = { runId: "00000000-0000-4000-8000-000000000000", attempt: 1 };

/**
 * Whether runs can be launched here, and what to fix if not: the API answers, a control-plane
 * URL is set, the namespace exists (a server-side dry run of an agent Job, which also puts the
 * manifest through validation and admission), and every verb the backend uses is allowed.
 */
export async function preflightKubernetes(options: {
  kubeConfig: KubeConfig;
  batch: BatchV1Api;
  shape: SandboxShape;
  controlPlaneUrl: string;
  signal?: AbortSignal;
}): Promise<{ ok: boolean; message: string }> {
  const { kubeConfig, shape } = options;
  const server = kubeConfig.getCurrentCluster()?.server ?? "(no cluster in the kubeconfig)";
  if (!options.controlPlaneUrl) {
    return { ok: false, message: "kubernetes: no control-plane URL is configured for agent pods (CORRAL_KUBERNETES_CONTROL_PLANE_URL)" };
  }
  let version: string;
  try {
    version = (await kubeConfig.makeApiClient(VersionApi).getCode()).gitVersion;
  } catch (error) {
    return { ok: false, message: `kubernetes: the API server at ${server} is not reachable: ${kubeErrorMessage(error)}` };
  }
  const probe = agentJob(shape, {
    ...PROBE,
    credential: "",
    controlPlaneUrl: options.controlPlaneUrl,
    limits: {},
    timeouts: { runMs: 60_000, graceMs: 10_000 },
  });
  try {
    await options.batch.createNamespacedJob({ namespace: shape.namespace, body: probe, dryRun: "All" });
  } catch (error) {
    if (isNotFound(error)) return { ok: false, message: `kubernetes: namespace "${shape.namespace}" does not exist on ${server}` };
    // RBAC answers before admission looks for the namespace, so a missing one reads the same.
    if (isForbidden(error)) {
      return {
        ok: false,
        message: `kubernetes: the scheduler's identity may not create Jobs in namespace "${shape.namespace}" on ${server} (does the namespace exist, and is deploy/'s Role bound there?): ${kubeErrorMessage(error)}`,
      };
    }
    return { ok: false, message: `kubernetes: an agent Job is refused in namespace "${shape.namespace}": ${kubeErrorMessage(error)}` };
  }
  const authorization = kubeConfig.makeApiClient(AuthorizationV1Api);
  const denied: string[] = [];
  await Promise.all(
    REQUIRED_ACCESS.map(async (access) => {
      const review = await authorization.createSelfSubjectAccessReview({
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: { resourceAttributes: { namespace: shape.namespace, ...access } },
        },
      });
      if (!review.status?.allowed) {
        denied.push(`${access.verb} ${access.resource}${access.subresource ? `/${access.subresource}` : ""}${access.group ? `.${access.group}` : ""}`);
      }
    }),
  );
  if (denied.length > 0) {
    return { ok: false, message: `kubernetes: the scheduler's identity may not ${denied.sort().join(", ")} in namespace "${shape.namespace}"` };
  }
  return { ok: true, message: `kubernetes ${version} at ${server}, namespace "${shape.namespace}"` };
}
