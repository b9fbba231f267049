import { randomBytes } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { waitFor } from "../wait-for.ts";

export { waitFor };

export interface TestNamespace {
  name: string;
  /** Starts deleting the namespace and everything in it; does not wait for it to go. */
  remove(): Promise<void>;
}

/**
 * A fresh namespace with its default ServiceAccount present: the ServiceAccount admission plugin
 * refuses pods until the serviceaccount controller has made it.
 */
export async function createTestNamespace(admin: KubeConfig, prefix = "corral-test"): Promise<TestNamespace> {
  const k8s = await import("@kubernetes/client-node");
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const name = `${prefix}-${randomBytes(4).toString("hex")}`;
  await core.createNamespace({ body: { metadata: { name } } });
  await waitFor(
    () => core.readNamespacedServiceAccount({ name: "default", namespace: name }).then(() => true, () => undefined),
    `the default ServiceAccount of namespace ${name}`,
  );
  return {
    name,
    remove: async () => {
      await core.deleteNamespace({ name }).catch(() => undefined);
    },
  };
}

/** Polls check every 100 ms until it returns a value other than undefined. */
