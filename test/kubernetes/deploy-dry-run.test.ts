import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CoreV1Api, KubernetesObjectApi, type KubernetesObject } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { sharedKubeCluster, type KubeCluster } from "../support/kube/cluster.ts";
import { missingKubeBinaries, TOOLS_BIN } from "../support/tools.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const OVERLAYS = ["deploy/k8s/overlays/dev", "deploy/k8s/overlays/dev-sync"];

/**
 * Every object deploy/ renders is accepted by a real API server: schema validation, defaulting
 * and admission (server-side dry run), not only by kustomize's YAML handling.
 */
describe("deploy/ manifests on a real API server", function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  const kustomize = `${TOOLS_BIN}kustomize`;

  before(async function () {
    const missing = missingKubeBinaries() ?? (existsSync(kustomize) ? undefined : `${kustomize} not built; run \`npm run tools\``);
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    cluster = await sharedKubeCluster();
  });

  for (const overlay of OVERLAYS) {
    it(`${overlay}: every object passes a server-side dry run`, async () => {
      const { stdout } = await promisify(execFile)(kustomize, ["build", overlay], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
      const objects = parseAllDocuments(stdout).map((d) => d.toJS() as KubernetesObject);
      assert.ok(objects.length > 10, `only ${objects.length} objects rendered`);
      const admin = cluster.kubeConfig("admin");
      const api = KubernetesObjectApi.makeApiClient(admin);
      // Namespaced objects can be dry-run only into a namespace that exists: create it for real.
      for (const namespace of objects.filter((o) => o.kind === "Namespace")) {
        await admin
          .makeApiClient(CoreV1Api)
          .createNamespace({ body: namespace as never })
          .catch((error: { code?: number }) => {
            if (error.code !== 409) throw error;
          });
      }
      const refused: string[] = [];
      for (const object of objects.filter((o) => o.kind !== "Namespace")) {
        try {
          await api.create(object, undefined, "All");
        } catch (error) {
          const body = (error as { body?: unknown }).body;
          const message = typeof body === "string" ? body : JSON.stringify(body);
          refused.push(`${object.kind}/${object.metadata?.name}: ${message}`);
        }
      }
      assert.deepEqual(refused, []);
    });
  }

  it("is a dry run that refuses what the API server would refuse", async () => {
    const api = KubernetesObjectApi.makeApiClient(cluster.kubeConfig("admin"));
    const broken = { apiVersion: "v1", kind: "Service", metadata: { name: "Not_A_DNS_Name", namespace: "default" }, spec: { ports: [{ port: 0 }] } };
    await assert.rejects(api.create(broken, undefined, "All"), (error: { code?: number }) => error.code === 422);
  });
});
