import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { CoreV1Api, RbacAuthorizationV1Api, type KubeConfig, type V1Role } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { RESTRICTED_USER } from "../../support/kube/cluster.ts";
export { waitFor } from "../../support/wait-for.ts";

const SCHEDULER_MANIFEST = fileURLToPath(new URL("../../../deploy/k8s/base/scheduler.yaml", import.meta.url));

/** The Role deploy/ ships for the scheduler, as written there: the tests grant exactly that. */
export function deployedSchedulerRole(): V1Role {
  const role = parseAllDocuments(readFileSync(SCHEDULER_MANIFEST, "utf8"))
    .map((d) => d.toJS() as V1Role)
    .find((o) => o?.kind === "Role" && o.metadata?.name === "corral-scheduler");
  if (!role) throw new Error(`no Role corral-scheduler in ${SCHEDULER_MANIFEST}`);
  return role;
}

/**
 * A fresh namespace for runs, with deploy/'s scheduler Role bound to the restricted test
 * identity (the scheduler's stand-in), and its default ServiceAccount present, since the
 * ServiceAccount admission plugin refuses pods until the controller has made it.
 */
export async function createRunsNamespace(admin: KubeConfig, options: { bindRole?: boolean } = {}): Promise<{ name: string; remove(): Promise<void> }> {
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  const name = `corral-runs-${randomBytes(4).toString("hex")}`;
  await core.createNamespace({ body: { metadata: { name } } });
  const role = deployedSchedulerRole();
  if (options.bindRole !== false) await rbac.createNamespacedRole({ namespace: name, body: { ...role, metadata: { name: "corral-scheduler", namespace: name } } });
  if (options.bindRole !== false) await rbac.createNamespacedRoleBinding({
    namespace: name,
    body: {
      metadata: { name: "corral-scheduler", namespace: name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "corral-scheduler" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: RESTRICTED_USER }],
    },
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await core.readNamespacedServiceAccount({ name: "default", namespace: name });
      break;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`namespace ${name} got no default ServiceAccount within 30 s`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    name,
    remove: async () => {
      await core.deleteNamespace({ name }).catch(() => undefined);
    },
  };
}

