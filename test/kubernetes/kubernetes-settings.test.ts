import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "@corral/plumbing/config.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { kubernetesSettings } from "@corral/scheduler/runtime/kubernetes/kubernetes-settings.ts";

const config = (env: Record<string, string>) => loadConfig(schedulerConfig, { DATABASE_URL: "postgres://x@localhost/x", ...env });

describe("kubernetes runtime settings", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-k8s-settings-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("read the kubeconfig only when the runtime first needs it, and name it when it cannot", () => {
    const settings = kubernetesSettings(config({ CORRAL_KUBECONFIG: join(dir, "missing") }), {});
    assert.throws(() => settings.loadKubeConfig(), new RegExp(`cannot load the kubeconfig ${join(dir, "missing")} \\(CORRAL_KUBECONFIG\\)`));
  });

  it("compile sizes, lists and the job TTL once", () => {
    const { shape, controlPlaneUrl } = kubernetesSettings(
      config({
        CORRAL_KUBERNETES_IMAGE_PULL_SECRETS: " registry, mirror ,",
        CORRAL_KUBERNETES_DEFAULT_MEMORY: "512MiB",
        CORRAL_KUBERNETES_JOB_TTL: "90s",
        CORRAL_CONTROL_PLANE_URL: "http://cp:8701",
      }),
      { CORRAL_LOG_LEVEL: "info" },
    );
    assert.deepEqual(shape.imagePullSecrets, ["registry", "mirror"]);
    assert.equal(shape.defaults.memoryBytes, 512 * 1024 ** 2);
    assert.equal(shape.ttlSecondsAfterFinished, 90);
    assert.equal(shape.namespace, "corral-runs");
    assert.equal(controlPlaneUrl, "http://cp:8701");
  });

  it("refuse a namespace that is not a DNS-1123 label, naming the variable", () => {
    assert.throws(() => config({ CORRAL_KUBERNETES_NAMESPACE: "Runs_Here" }), (error: unknown) => error instanceof ConfigError && error.variables.includes("CORRAL_KUBERNETES_NAMESPACE"));
  });

  it("take a PodTemplate or a bare PodTemplateSpec, and refuse anything else naming the variable", async () => {
    const podTemplate = join(dir, "template.yaml");
    await writeFile(podTemplate, "apiVersion: v1\nkind: PodTemplate\nmetadata: { name: agents }\ntemplate:\n  spec:\n    nodeSelector: { pool: agents }\n    containers: []\n");
    assert.deepEqual(kubernetesSettings(config({ CORRAL_KUBERNETES_POD_TEMPLATE: podTemplate }), {}).shape.podTemplate?.spec?.nodeSelector, { pool: "agents" });
    const spec = join(dir, "spec.yaml");
    await writeFile(spec, "metadata: { annotations: { team: infra } }\nspec: { containers: [] }\n");
    assert.deepEqual(kubernetesSettings(config({ CORRAL_KUBERNETES_POD_TEMPLATE: spec }), {}).shape.podTemplate?.metadata?.annotations, { team: "infra" });
    for (const [name, text] of [["scalar.yaml", "just text"], ["bad.yaml", "spec: [unclosed"], ["badspec.yaml", "spec: 3"]]) {
      const file = join(dir, name!);
      await writeFile(file, text!);
      assert.throws(
        () => kubernetesSettings(config({ CORRAL_KUBERNETES_POD_TEMPLATE: file }), {}),
        (error: unknown) => error instanceof ConfigError && error.variables.includes("CORRAL_KUBERNETES_POD_TEMPLATE") && error.message.includes(file),
      );
    }
    assert.throws(() => kubernetesSettings(config({ CORRAL_KUBERNETES_POD_TEMPLATE: join(dir, "nope.yaml") }), {}), /cannot read/);
  });
});
