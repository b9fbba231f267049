import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { BatchV1Api, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { RunStatus, type SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createKubernetesRuntime } from "@corral/scheduler/runtime/kubernetes/kubernetes-runtime.ts";
import type { SandboxShape } from "@corral/scheduler/runtime/kubernetes/sandbox-manifests.ts";
import { jobName, secretName, sandboxLabels } from "@corral/scheduler/runtime/kubernetes/sandbox-names.ts";
import { createSeededRemote, remoteBranch, useTempDirs } from "../agent/support/git-fixtures.ts";
import { sharedKubeCluster, type KubeCluster } from "../support/kube/cluster.ts";
import { startFakeNode, type FakeNode } from "../support/kube/fake-node.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { missingKubeBinaries } from "../support/tools.ts";
import { createRunsNamespace, waitFor } from "./support/runs-namespace.ts";

const TEST_SHAPE: SandboxShape = {
  namespace: "",
  image: "corral-agent:test",
  imagePullSecrets: [],
  ttlSecondsAfterFinished: 600,
  defaults: { cpuMillis: 100, memoryBytes: 256 * 1024 ** 2, diskBytes: 1024 ** 3 },
  agentEnv: {},
};
const AGENT_MAIN = fileURLToPath(import.meta.resolve("@corral/agent/main.ts"));
const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

/**
 * The kubernetes runtime end to end against a real kube-apiserver and controller manager:
 * the scheduler (with the restricted identity bound to deploy/'s Role) creates Jobs, the Job
 * controller makes pods, the test node runs the agent of each pod as a local process, the
 * agent attaches to the real control plane, and the Job completes.
 */
describe("kubernetes runtime against a real API server", function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let admin: KubeConfig;
  let node: FakeNode;
  let namespace: { name: string; remove(): Promise<void> };
  let stack: StackFixture;
  const tempDir = useTempDirs();

  before(async function () {
    const missing = missingKubeBinaries();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    cluster = await sharedKubeCluster();
    admin = cluster.kubeConfig("admin");
    namespace = await createRunsNamespace(admin);
    node = await startFakeNode(admin, {
      images: {
        "corral-agent:test": [process.execPath, AGENT_MAIN],
        // An image whose entrypoint fails before the agent could attach.
        "corral-broken:test": ["/bin/sh", "-c", "echo 'entrypoint: cannot find the agent binary' >&2; exit 127"],
      },
    });
    stack = await startKubernetesStack("corral-agent:test");
  });
  after(async () => {
    await stack?.close();
    await node?.stop();
    await namespace?.remove();
  });

  function startKubernetesStack(image: string, runsNamespace = namespace.name): Promise<StackFixture> {
    return startStackFixture({
      CORRAL_RUNTIMES: "kubernetes",
      CORRAL_DEFAULT_RUNTIME: "kubernetes",
      CORRAL_KUBECONFIG: cluster.kubeconfigFile("restricted"),
      CORRAL_KUBERNETES_NAMESPACE: runsNamespace,
      CORRAL_KUBERNETES_AGENT_IMAGE: image,
      CORRAL_KUBERNETES_DEFAULT_CPU_MILLIS: "100",
      CORRAL_KUBERNETES_DEFAULT_MEMORY: "256MiB",
      CORRAL_KUBERNETES_DEFAULT_DISK: "1GiB",
    });
  }

  const batch = () => admin.makeApiClient(BatchV1Api);
  const core = () => admin.makeApiClient(CoreV1Api);
  const exists = async (read: () => Promise<unknown>) =>
    read().then(
      () => true,
      (error: { code?: number }) => {
        if (error.code === 404) return false;
        throw error;
      },
    );
  const jobExists = (runId: string, attempt = 1) => exists(() => batch().readNamespacedJob({ name: jobName(runId, attempt), namespace: namespace.name }));
  const secretExists = (runId: string, attempt = 1) => exists(() => core().readNamespacedSecret({ name: secretName(runId, attempt), namespace: namespace.name }));

  async function submit(on: StackFixture, spec: Record<string, unknown>) {
    const root = await tempDir("k8s");
    const remote = await createSeededRemote(root);
    const { run } = await on.client.submitRun({
      spec: { repositoryUrl: remote.url, baseRef: "main", ...spec } as MessageInitShape<typeof SubmitRunRequestSchema>["spec"],
    });
    return { root, remote, runId: run!.id };
  }

  async function finished(on: StackFixture, runId: string, timeoutMs = 60_000) {
    return waitFor(
      async () => {
        const { run } = await on.client.getRun({ runId });
        return run && TERMINAL.includes(run.status) ? run : undefined;
      },
      `run ${runId} to end`,
      timeoutMs,
    );
  }

  async function events(reason: string, runId: string) {
    const list = await core().listNamespacedEvent({ namespace: namespace.name, labelSelector: `corral.dev/run-id=${runId}` });
    return list.items.filter((e) => e.reason === reason);
  }

  it("runs a run as a Job: the agent attaches, pushes the branch, the Job completes and its objects go", async () => {
    const { root, remote, runId } = await submit(stack, {
      agent: { commandTemplate: "echo from-a-pod > POD.md", prompt: "p" },
      validationSteps: [{ name: "file", command: "test -s POD.md" }],
    });
    // The Job and its Secret, as the backend made them, while the run goes.
    const job = await waitFor(() => batch().readNamespacedJob({ name: jobName(runId, 1), namespace: namespace.name }).catch(() => undefined), "the Job");
    assert.equal(job.spec?.backoffLimit, 0);
    assert.equal(job.spec?.template.spec?.automountServiceAccountToken, false);
    assert.deepEqual(job.metadata?.labels, sandboxLabels(runId, 1));
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.COMPLETED, run.reason);
    assert.equal(remoteBranch(root, remote.bare, run.result!.branch), run.result!.commitSha);
    // Cleanup after finalization: the Job (with its pods) and the Secret are deleted.
    await waitFor(async () => (!(await jobExists(runId)) && !(await secretExists(runId)) ? true : undefined), "the Job and Secret to go");
    assert.equal((await events("CorralFinalized", runId)).length, 1);
    assert.equal((await events("CorralObjectsDeleted", runId)).length, 1);
  });

  it("reports a failing pipeline as failed, with the step named", async () => {
    const { runId } = await submit(stack, {
      agent: { commandTemplate: "echo change > CHANGE.md", prompt: "p" },
      validationSteps: [{ name: "tests", command: "echo 2 tests failed; exit 1" }],
    });
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.FAILED);
    assert.match(run.reason, /tests/);
  });

  it("cancels: the agent stops within the grace; an agent that does not is force-deleted with its pod", async () => {
    const polite = await submit(stack, { agent: { commandTemplate: "sleep 300", prompt: "p" } });
    await waitFor(async () => ((await stack.client.getRun({ runId: polite.runId })).run?.currentStep === "agent" ? true : undefined), "the agent step");
    await stack.client.cancelRun({ runId: polite.runId, reason: "changed my mind" });
    const cancelled = await finished(stack, polite.runId);
    assert.equal(cancelled.status, RunStatus.CANCELLED, cancelled.reason);
    assert.match(cancelled.reason, /stopped as asked/);

    // This agent is frozen (SIGSTOP), so it cannot honour the cancel: after the grace the
    // scheduler deletes the Job with grace 0, the node kills the process, and the run ends.
    const stuck = await submit(stack, { agent: { commandTemplate: "sleep 300", prompt: "p" }, timeouts: { grace: { seconds: 1n } } });
    await waitFor(async () => ((await stack.client.getRun({ runId: stuck.runId })).run?.currentStep === "agent" ? true : undefined), "the agent step");
    const pid = await agentPid(stuck.runId);
    process.kill(pid, "SIGSTOP");
    await stack.client.cancelRun({ runId: stuck.runId });
    const forced = await finished(stack, stuck.runId);
    assert.equal(forced.status, RunStatus.CANCELLED, forced.reason);
    // The frozen agent also stops heartbeating; whichever comes first (the grace or the lease)
    // makes the scheduler force-delete the Job.
    assert.equal((await events("CorralCancelRequested", stuck.runId)).length, 1);
    assert.equal((await events("CorralForceDeleted", stuck.runId)).length, 1);
    await waitFor(async () => (!(await jobExists(stuck.runId)) ? true : undefined), "the Job to go");
    // Deleted with its pods: the frozen agent's process is gone too, not orphaned.
    await waitFor(async () => ((await podsOf(stuck.runId)).length === 0 ? true : undefined), "the pod to go");
    await waitFor(async () => (processGone(pid) ? true : undefined), "the agent process to be killed");
  });

  it("fails a run at once when its image cannot be pulled, with the reason", async () => {
    // A namespace of its own: a scheduler takes every Job in its namespace that its database
    // does not know for an orphan, so two installations never share one.
    const own = await createRunsNamespace(admin);
    const badImage = await startKubernetesStack("corral-no-such-image:1", own.name);
    try {
      const started = Date.now();
      const { runId } = await submit(badImage, { agent: { commandTemplate: "true", prompt: "p" } });
      const run = await finished(badImage, runId);
      assert.equal(run.status, RunStatus.FAILED);
      assert.match(run.reason, /ErrImagePull/);
      // Well before the attach timeout (2 min) and the Job's deadline.
      assert.ok(Date.now() - started < 60_000);
    } finally {
      await badImage.close();
      await own.remove();
    }
  });

  it("keeps the pod's output as diagnostics when the agent never attaches", async () => {
    const own = await createRunsNamespace(admin);
    const broken = await startKubernetesStack("corral-broken:test", own.name);
    try {
      const { runId } = await submit(broken, { agent: { commandTemplate: "true", prompt: "p" } });
      const run = await finished(broken, runId);
      assert.equal(run.status, RunStatus.FAILED);
      assert.match(run.reason, /cannot find the agent binary/);
    } finally {
      await broken.close();
      await own.remove();
    }
  });

  it("fails a run whose Job someone else deleted", async () => {
    const { runId } = await submit(stack, { agent: { commandTemplate: "sleep 300", prompt: "p" } });
    await waitFor(async () => ((await stack.client.getRun({ runId })).run?.currentStep === "agent" ? true : undefined), "the agent step");
    await batch().deleteNamespacedJob({ name: jobName(runId, 1), namespace: namespace.name, body: { propagationPolicy: "Background" } });
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.FAILED);
  });

  it("finishes a run across a scheduler restart (re-list, then watch)", async () => {
    const { runId } = await submit(stack, { agent: { commandTemplate: "sleep 3 && echo done > DONE.md", prompt: "p" } });
    await waitFor(async () => ((await stack.client.getRun({ runId })).run?.currentStep === "agent" ? true : undefined), "the agent step");
    await stack.restartScheduler();
    const run = await finished(stack, runId);
    assert.equal(run.status, RunStatus.COMPLETED, run.reason);
  });

  it("deletes orphaned Jobs: a Job whose run is finished or unknown", async () => {
    const unknownRun = "7d3f2c1a-9b8e-4d6f-a5c4-3b2a1f0e9d8c";
    const labels = sandboxLabels(unknownRun, 1);
    await batch().createNamespacedJob({
      namespace: namespace.name,
      body: {
        metadata: { name: jobName(unknownRun, 1), labels },
        spec: {
          backoffLimit: 0,
          template: {
            metadata: { labels },
            spec: { restartPolicy: "Never", containers: [{ name: "agent", image: "corral-broken:test" }] },
          },
        },
      },
    });
    await waitFor(async () => (!(await jobExists(unknownRun)) ? true : undefined), "the orphan Job to be deleted", 30_000);
  });

  it("lets the garbage collector remove the Secret with its Job", async () => {
    // The backend alone, in a namespace no scheduler watches (the stack's would take this Job
    // of an unknown run for an orphan), so that nothing but the owner reference can remove the Secret.
    const own = await createRunsNamespace(admin);
    const backend = createKubernetesRuntime({
      loadKubeConfig: () => cluster.kubeConfig("restricted"),
      shape: { ...TEST_SHAPE, namespace: own.name },
      controlPlaneUrl: "http://corral-control-plane.test:8701",
      logger: createLogger({ name: "test", level: "silent" }),
    });
    const runId = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
    try {
      const handle = await backend.launch({ runId, attempt: 1, credential: "corral_att_x", controlPlaneUrl: "http://127.0.0.1:9", limits: {}, timeouts: { runMs: 60_000, graceMs: 1000 } });
      assert.deepEqual(handle, { namespace: own.name, jobName: jobName(runId, 1) });
      const job = await batch().readNamespacedJob({ name: jobName(runId, 1), namespace: own.name });
      // The runtime's control-plane URL (as pods reach it) wins over the scheduler's.
      const env = job.spec?.template.spec?.containers[0]?.env ?? [];
      assert.equal(env.find((e) => e.name === "CORRAL_CONTROL_PLANE_URL")?.value, "http://corral-control-plane.test:8701");
      const secret = await core().readNamespacedSecret({ name: secretName(runId, 1), namespace: own.name });
      assert.deepEqual(
        secret.metadata?.ownerReferences?.map((o) => [o.kind, o.name, o.uid]),
        [["Job", job.metadata!.name, job.metadata!.uid]],
      );
      // A second launch of the same attempt (a retried launch) is a duplicate, not an error.
      assert.deepEqual(await backend.launch({ runId, attempt: 1, credential: "corral_att_x", controlPlaneUrl: "http://127.0.0.1:9", limits: {}, timeouts: { runMs: 60_000, graceMs: 1000 } }), handle);
      await batch().deleteNamespacedJob({ name: jobName(runId, 1), namespace: own.name, body: { propagationPolicy: "Background" } });
      await waitFor(
        async () => (!(await exists(() => core().readNamespacedSecret({ name: secretName(runId, 1), namespace: own.name }))) ? true : undefined),
        "the Secret to be garbage-collected",
      );
    } finally {
      await backend.close();
      await own.remove();
    }
  });

  it("works with deploy/'s Role alone, which cannot read another Secret; preflight names what is missing", async () => {
    const restricted = cluster.kubeConfig("restricted");
    await core().createNamespacedSecret({ namespace: namespace.name, body: { metadata: { name: "someone-elses" }, stringData: { password: "hunter2" } } });
    await assert.rejects(restricted.makeApiClient(CoreV1Api).readNamespacedSecret({ name: "someone-elses", namespace: namespace.name }), (error: { code?: number }) => error.code === 403);
    await assert.rejects(restricted.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: namespace.name }), (error: { code?: number }) => error.code === 403);
    // Each backend made here watches its namespace until closed; all are closed at the end.
    const made: { close(): Promise<void> }[] = [];
    const kept = <T extends { close(): Promise<void> }>(runtime: T): T => (made.push(runtime), runtime);
    const backend = (ns: string, controlPlaneUrl = "http://127.0.0.1:9") =>
      kept(createKubernetesRuntime({ loadKubeConfig: () => restricted, shape: { ...TEST_SHAPE, namespace: ns }, controlPlaneUrl, logger: createLogger({ name: "test", level: "silent" }) }));
    try {
      const good = backend(namespace.name);
      assert.deepEqual(await good.preflight(), { ok: true, message: `kubernetes v1.36.3 at ${cluster.url}, namespace "${namespace.name}"` });
      // A namespace where the Role is not bound: every verb named.
      const other = await createRunsNamespace(admin, { bindRole: false });
      try {
        const denied = await backend(other.name).preflight();
        assert.equal(denied.ok, false);
        assert.match(denied.message, /refused|may not/);
      } finally {
        await other.remove();
      }
      // The restricted identity cannot tell a missing namespace from one it has no rights in.
      const forbidden = await backend("corral-no-such-namespace").preflight();
      assert.match(forbidden.message, /may not create Jobs in namespace "corral-no-such-namespace".*does the namespace exist/);
      const asAdmin = kept(createKubernetesRuntime({
        loadKubeConfig: () => admin,
        shape: { ...TEST_SHAPE, namespace: "corral-no-such-namespace" },
        controlPlaneUrl: "http://127.0.0.1:9",
        logger: createLogger({ name: "test", level: "silent" }),
      }));
      assert.deepEqual(await asAdmin.preflight(), { ok: false, message: `kubernetes: namespace "corral-no-such-namespace" does not exist on ${cluster.url}` });
      const noUrl = await backend(namespace.name, "").preflight();
      assert.match(noUrl.message, /no control-plane URL/);
      const unreachable = kept(createKubernetesRuntime({
        loadKubeConfig: () => {
          const config = cluster.kubeConfig("restricted");
          config.clusters[0] = { ...config.clusters[0]!, server: "https://127.0.0.1:9" };
          return config;
        },
        shape: { ...TEST_SHAPE, namespace: namespace.name },
        controlPlaneUrl: "http://127.0.0.1:9",
        logger: createLogger({ name: "test", level: "silent" }),
      }));
      assert.match((await unreachable.preflight()).message, /API server at https:\/\/127\.0\.0\.1:9 is not reachable/);
    } finally {
      await Promise.all(made.map((runtime) => runtime.close()));
    }
  });

  const podsOf = async (runId: string) =>
    (await core().listNamespacedPod({ namespace: namespace.name, labelSelector: `corral.dev/run-id=${runId}` })).items;

  function processGone(pid: number): boolean {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }

  /** The pid of the agent process the test node started for a run (its env names the run). */
  async function agentPid(runId: string): Promise<number> {
    return waitFor(async () => {
      for (const entry of await readdir("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        const environ = await readFile(`/proc/${entry}/environ`, "latin1").catch(() => "");
        const cmdline = await readFile(`/proc/${entry}/cmdline`, "latin1").catch(() => "");
        if (environ.includes(`CORRAL_RUN_ID=${runId}\0`) && cmdline.includes(AGENT_MAIN)) return Number(entry);
      }
      return undefined;
    }, "the agent process");
  }
});
