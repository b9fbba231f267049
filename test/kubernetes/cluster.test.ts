import assert from "node:assert/strict";
import {
  AuthorizationV1Api,
  BatchV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  VersionApi,
  type KubeConfig,
  type V1Job,
  type V1Pod,
} from "@kubernetes/client-node";
import { RESTRICTED_USER, sharedKubeCluster, type KubeCluster } from "../support/kube/cluster.ts";
import { startFakeNode, type FakeNode } from "../support/kube/fake-node.ts";
import { createTestNamespace, waitFor, type TestNamespace } from "../support/kube/test-namespace.ts";
import { missingKubeBinaries } from "../support/tools.ts";

const SHELL_IMAGE = "shell:test";

/**
 * The test harness itself against a real kube-apiserver and kube-controller-manager: versions,
 * RBAC, and the fake node doing the kubelet's part under the real Job and garbage collectors.
 */
describe("kube test cluster", function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let admin: KubeConfig;
  let node: FakeNode;
  let namespace: TestNamespace;
  const core = () => admin.makeApiClient(CoreV1Api);
  const batch = () => admin.makeApiClient(BatchV1Api);

  before(async function () {
    const missing = missingKubeBinaries();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    cluster = await sharedKubeCluster();
    admin = cluster.kubeConfig("admin");
    namespace = await createTestNamespace(admin, "corral-cluster-test");
    node = await startFakeNode(admin, { images: { [SHELL_IMAGE]: ["/bin/sh"] }, namespace: namespace.name });
  });
  after(async () => {
    await namespace?.remove();
    await node?.stop();
  });
  afterEach(async function () {
    if (this.currentTest?.state === "failed" && cluster) console.log(await cluster.logTails(20));
  });

  /** A Job of one pod running `sh -c script` (or the given image), never retried. */
  async function createJob(name: string, script: string, spec: { image?: string; terminationGracePeriodSeconds?: number } = {}): Promise<V1Job> {
    return batch().createNamespacedJob({
      namespace: namespace.name,
      body: {
        metadata: { name },
        spec: {
          backoffLimit: 0,
          template: {
            spec: {
              restartPolicy: "Never",
              terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds,
              containers: [{ name: "main", image: spec.image ?? SHELL_IMAGE, args: ["-c", script] }],
            },
          },
        },
      },
    });
  }

  const jobCondition = (name: string, type: string) =>
    waitFor(async () => {
      const job = await batch().readNamespacedJob({ name, namespace: namespace.name });
      return job.status?.conditions?.find((c) => c.type === type && c.status === "True");
    }, `Job ${name} to be ${type}`);

  const podsOf = async (job: string) =>
    (await core().listNamespacedPod({ namespace: namespace.name, labelSelector: `batch.kubernetes.io/job-name=${job}` })).items;

  const podOf = (job: string, ready: (pod: V1Pod) => boolean, what: string) =>
    waitFor(async () => (await podsOf(job)).find(ready), `a pod of Job ${job} ${what}`);

  const notFound = (error: unknown) => (error as { code?: number }).code === 404;

  it("is the pinned Kubernetes version", async () => {
    const version = await admin.makeApiClient(VersionApi).getCode();
    assert.equal(version.gitVersion, "v1.36.3");
    assert.equal(version.minor, "36");
  });

  it("enforces RBAC: the restricted identity may do only what a Role binds to it", async () => {
    const restricted = cluster.kubeConfig("restricted");
    const listSecrets = () => restricted.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: namespace.name });
    const mayListSecrets = async (ns: string) => {
      const review = await restricted.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { namespace: ns, verb: "list", resource: "secrets" } } },
      });
      return review.status?.allowed;
    };
    await assert.rejects(listSecrets(), (error: { code?: number }) => error.code === 403);
    assert.equal(await mayListSecrets(namespace.name), false);

    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: namespace.name,
      body: { metadata: { name: "secret-reader" }, rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["list"] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: namespace.name,
      body: {
        metadata: { name: "secret-reader" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "secret-reader" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: RESTRICTED_USER }],
      },
    });
    // The authorizer reads roles from an informer cache, so the grant takes effect a moment later.
    await waitFor(async () => ((await mayListSecrets(namespace.name)) ? true : undefined), "the RoleBinding to take effect");
    const secrets = await listSecrets();
    assert.ok(Array.isArray(secrets.items));
    assert.equal(await mayListSecrets("default"), false, "a Role grants nothing outside its namespace");
  });

  it("runs a Job's pod on the fake node to completion", async () => {
    await createJob("succeeds", "echo hi; exit 0");
    await jobCondition("succeeds", "Complete");
    const [pod] = await podsOf("succeeds");
    assert.equal(pod?.spec?.nodeName, node.name);
    assert.equal(pod?.status?.phase, "Succeeded");
    const terminated = pod?.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(terminated?.exitCode, 0);
    assert.equal(terminated?.reason, "Completed");
    assert.ok(terminated?.startedAt && terminated.finishedAt);
    assert.ok(pod?.status?.startTime);
  });

  it("fails a Job whose pod exits 1, with backoffLimit 0", async () => {
    await createJob("fails", "echo broken >&2; exit 1");
    const failed = await jobCondition("fails", "Failed");
    assert.equal(failed.reason, "BackoffLimitExceeded");
    const pods = await podsOf("fails");
    assert.equal(pods.length, 1, "no retry");
    assert.equal(pods[0]?.status?.phase, "Failed");
    assert.equal(pods[0]?.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 1);
  });

  it("reports ErrImagePull for an image the node does not know", async () => {
    await createJob("no-image", "exit 0", { image: "registry.example/missing:1" });
    const pod = await podOf("no-image", (p) => p.status?.containerStatuses?.[0]?.state?.waiting !== undefined, "waiting");
    const waiting = pod.status!.containerStatuses![0]!.state!.waiting!;
    assert.equal(waiting.reason, "ErrImagePull");
    assert.match(waiting.message ?? "", /registry\.example\/missing:1/);
    assert.equal(pod.status?.phase, "Pending");
  });

  it("kills the process and removes the pod when the Job is deleted with Background propagation", async () => {
    await createJob("deleted", "echo started; exec sleep 300", { terminationGracePeriodSeconds: 5 });
    const pod = await podOf("deleted", (p) => p.status?.phase === "Running", "running");
    const pid = node.pid(namespace.name, pod.metadata!.name!);
    assert.ok(pid, "the fake node runs the pod's process");
    assert.doesNotThrow(() => process.kill(pid, 0));

    await batch().deleteNamespacedJob({ name: "deleted", namespace: namespace.name, propagationPolicy: "Background" });
    await waitFor(async () => ((await podsOf("deleted")).length === 0 ? true : undefined), "the Job's pod to disappear");
    assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
    await assert.rejects(batch().readNamespacedJob({ name: "deleted", namespace: namespace.name }), notFound);
  });

  it("garbage-collects a Secret owner-referenced to a Job once the Job is deleted", async () => {
    const job = await createJob("owner", "exit 0");
    await core().createNamespacedSecret({
      namespace: namespace.name,
      body: {
        metadata: {
          name: "owned",
          ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: "owner", uid: job.metadata!.uid!, blockOwnerDeletion: true }],
        },
        stringData: { token: "not-a-real-token" },
      },
    });
    await jobCondition("owner", "Complete");
    await core().readNamespacedSecret({ name: "owned", namespace: namespace.name });
    await batch().deleteNamespacedJob({ name: "owner", namespace: namespace.name, propagationPolicy: "Background" });
    await waitFor(
      () => core().readNamespacedSecret({ name: "owned", namespace: namespace.name }).then(() => undefined, (error) => (notFound(error) ? true : Promise.reject(error))),
      "the garbage collector to delete the Secret",
    );
  });

  it("serves a pod's output through pods/log, honouring limitBytes and tailLines", async () => {
    await createJob("logs", "printf 'line one\\nline two\\nline three\\n'; echo 'to stderr' >&2");
    await jobCondition("logs", "Complete");
    const [pod] = await podsOf("logs");
    const read = (params: { limitBytes?: number; tailLines?: number }) =>
      core().readNamespacedPodLog({ name: pod!.metadata!.name!, namespace: namespace.name, container: "main", ...params });
    assert.equal(await read({}), "line one\nline two\nline three\nto stderr\n");
    assert.equal(await read({ limitBytes: 12 }), "line one\nlin");
    assert.equal(await read({ tailLines: 2 }), "line three\nto stderr\n");
    assert.equal(await read({ tailLines: 2, limitBytes: 4 }), "line");
  });

  it("reported no failed API calls on the fake node", () => {
    assert.deepEqual(node.problems, []);
  });
});
