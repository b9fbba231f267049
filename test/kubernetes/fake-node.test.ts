import assert from "node:assert/strict";
import { CoreV1Api, type KubeConfig, type V1Pod, type V1PodSpec } from "@kubernetes/client-node";
import { sharedKubeCluster } from "../support/kube/cluster.ts";
import { startFakeNode, type FakeNode } from "../support/kube/fake-node.ts";
import { createTestNamespace, waitFor, type TestNamespace } from "../support/kube/test-namespace.ts";
import { missingKubeBinaries } from "../support/tools.ts";

const SHELL_IMAGE = "shell:test";
const FALSE_IMAGE = "false:test";

/** The fake node's kubelet part in detail, with bare pods (no Job) against the real apiserver. */
describe("fake node", function () {
  this.timeout(60_000);
  let admin: KubeConfig;
  let node: FakeNode;
  let namespace: TestNamespace;
  const core = () => admin.makeApiClient(CoreV1Api);

  before(async function () {
    const missing = missingKubeBinaries();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    this.timeout(120_000);
    admin = (await sharedKubeCluster()).kubeConfig("admin");
    namespace = await createTestNamespace(admin, "corral-fake-node-test");
    node = await startFakeNode(admin, { images: { [SHELL_IMAGE]: ["/bin/sh"], [FALSE_IMAGE]: ["/bin/false"] }, namespace: namespace.name });
  });
  after(async () => {
    await namespace?.remove();
    await node?.stop();
  });

  /** A pod of one container running `sh -c script`; spec and container fields override. */
  function createPod(name: string, script: string, overrides: { spec?: Partial<V1PodSpec>; container?: Record<string, unknown> } = {}): Promise<V1Pod> {
    return core().createNamespacedPod({
      namespace: namespace.name,
      body: {
        metadata: { name },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          containers: [{ name: "main", image: SHELL_IMAGE, args: ["-c", script], ...overrides.container }],
          ...overrides.spec,
        },
      },
    });
  }
  const readPod = (name: string) => core().readNamespacedPod({ name, namespace: namespace.name });
  const podUntil = (name: string, ready: (pod: V1Pod) => boolean, what: string) =>
    waitFor(async () => {
      const pod = await readPod(name);
      return ready(pod) ? pod : undefined;
    }, `pod ${name} ${what}`);
  const ended = (name: string) => podUntil(name, (p) => p.status?.phase === "Succeeded" || p.status?.phase === "Failed", "to end");
  const gone = (name: string) =>
    waitFor(() => readPod(name).then(() => undefined, (error: { code?: number }) => (error.code === 404 ? true : Promise.reject(error))), `pod ${name} to be gone`);
  const logs = (name: string, params: { follow?: boolean } = {}) =>
    core().readNamespacedPodLog({ name, namespace: namespace.name, container: "main", ...params });
  const waiting = (pod: V1Pod) => pod.status?.containerStatuses?.[0]?.state?.waiting;

  it("gives the process the container's env, its mounted Secret with the pod's file mode, and its working dir", async () => {
    await core().createNamespacedSecret({ namespace: namespace.name, body: { metadata: { name: "creds" }, stringData: { token: "s3cret", other: "unlisted" } } });
    await core().createNamespacedConfigMap({ namespace: namespace.name, body: { metadata: { name: "settings" }, data: { mode: "fast" } } });
    await createPod(
      "env",
      [
        'echo "plain=$PLAIN secret=$FROM_SECRET config=$FROM_CONFIG pod=$POD_NAME greeting=$GREETING"',
        'echo "credential=$(cat "$CORRAL_CREDENTIAL_FILE") mode=$(stat -c %a "$CORRAL_CREDENTIAL_FILE")"',
        'echo "files=$(ls "$(dirname "$CORRAL_CREDENTIAL_FILE")")"',
        'echo "file=$CORRAL_CREDENTIAL_FILE"',
        'echo "cwd=$(pwd)"',
      ].join("; "),
      {
        spec: {
          volumes: [
            { name: "credential", secret: { secretName: "creds", defaultMode: 0o400, items: [{ key: "token", path: "token" }] } },
            { name: "work", emptyDir: {} },
          ],
        },
        container: {
          workingDir: "/work/repo",
          env: [
            { name: "PLAIN", value: "hello" },
            { name: "FROM_SECRET", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } },
            { name: "FROM_CONFIG", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
            { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
            { name: "GREETING", value: "$(PLAIN) world" },
            { name: "CORRAL_CREDENTIAL_FILE", value: "/var/run/corral/credential/token" },
          ],
          volumeMounts: [
            { name: "credential", mountPath: "/var/run/corral/credential", readOnly: true },
            { name: "work", mountPath: "/work" },
          ],
        },
      },
    );
    const pod = await ended("env");
    assert.equal(pod.status?.phase, "Succeeded", await logs("env"));
    const lines = (await logs("env")).trimEnd().split("\n");
    assert.equal(lines[0], "plain=hello secret=s3cret config=fast pod=env greeting=hello world");
    assert.equal(lines[1], "credential=s3cret mode=400");
    assert.equal(lines[2], "files=token", "only the listed item is written");
    assert.match(lines[3]!, /^file=\/.+\/volumes\/credential\/token$/);
    assert.match(lines[4]!, /^cwd=\/.+\/volumes\/work\/repo$/);
  });

  it("runs the container's command in place of the image's argv, with its args", async () => {
    await createPod("command", "", { container: { image: FALSE_IMAGE, command: ["/bin/sh", "-c"], args: ['echo "from the command: $0"', "zero"] } });
    const pod = await ended("command");
    assert.equal(pod.status?.phase, "Succeeded");
    assert.equal(await logs("command"), "from the command: zero\n");
  });

  it("runs the image's argv with the container's args appended", async () => {
    await createPod("image-argv", "", { container: { image: FALSE_IMAGE, args: ["ignored by false"] } });
    const pod = await ended("image-argv");
    assert.equal(pod.status?.phase, "Failed");
    const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(terminated?.exitCode, 1);
    assert.equal(terminated?.reason, "Error");
  });

  it("waits in ContainerCreating for a Secret volume until the Secret exists, as a kubelet retries mounts", async () => {
    await createPod("late-secret", 'cat "$F"; echo " mode=$(stat -c %a "$F")"', {
      spec: { volumes: [{ name: "late", secret: { secretName: "late" } }] },
      container: { volumeMounts: [{ name: "late", mountPath: "/var/run/late" }], env: [{ name: "F", value: "/var/run/late/key" }] },
    });
    const pod = await podUntil("late-secret", (p) => waiting(p) !== undefined, "to wait");
    assert.equal(waiting(pod)?.reason, "ContainerCreating");
    assert.match(waiting(pod)?.message ?? "", /secret "late" not found/);
    assert.equal(pod.status?.phase, "Pending");

    await core().createNamespacedSecret({ namespace: namespace.name, body: { metadata: { name: "late" }, stringData: { key: "arrived" } } });
    assert.equal((await ended("late-secret")).status?.phase, "Succeeded");
    // The apiserver defaults a secret volume's defaultMode to 0644.
    assert.equal(await logs("late-secret"), "arrived mode=644\n");
  });

  it("reports CreateContainerConfigError for an env var from a missing Secret", async () => {
    await createPod("missing-env", "exit 0", { container: { env: [{ name: "X", valueFrom: { secretKeyRef: { name: "absent", key: "k" } } }] } });
    const pod = await podUntil("missing-env", (p) => waiting(p) !== undefined, "to wait");
    assert.equal(waiting(pod)?.reason, "CreateContainerConfigError");
    assert.equal(waiting(pod)?.message, 'secret "absent" not found');
  });

  it("reports ErrImagePull, naming the image, for an image it does not have", async () => {
    await createPod("unknown-image", "exit 0", { container: { image: "ghcr.io/example/nothing:2" } });
    const pod = await podUntil("unknown-image", (p) => waiting(p) !== undefined, "to wait");
    assert.equal(waiting(pod)?.reason, "ErrImagePull");
    assert.match(waiting(pod)?.message ?? "", /"ghcr\.io\/example\/nothing:2"/);
    await core().deleteNamespacedPod({ name: "unknown-image", namespace: namespace.name });
    await gone("unknown-image");
  });

  it("reports StartError with exit code 128 when the executable does not exist", async () => {
    await createPod("no-executable", "", { container: { command: ["/nonexistent/agent"] } });
    const pod = await ended("no-executable");
    assert.equal(pod.status?.phase, "Failed");
    const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(terminated?.exitCode, 128);
    assert.equal(terminated?.reason, "StartError");
    assert.match(terminated?.message ?? "", /\/nonexistent\/agent/);
  });

  it("stops a deleted pod's process with SIGTERM and removes the pod well within a long grace", async () => {
    await createPod("term", "echo ready; exec sleep 300", { spec: { terminationGracePeriodSeconds: 30 } });
    const pod = await podUntil("term", (p) => p.status?.phase === "Running", "to run");
    const pid = node.pid(namespace.name, "term")!;
    const started = Date.now();
    await core().deleteNamespacedPod({ name: "term", namespace: namespace.name });
    await gone("term");
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
    assert.ok(pod.status?.startTime);
  });

  it("SIGKILLs a process that ignores SIGTERM once the grace period is over", async () => {
    await createPod("stubborn", "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.1; done", { spec: { terminationGracePeriodSeconds: 2 } });
    await podUntil("stubborn", (p) => p.status?.phase === "Running", "to run");
    // The trap is set once the script has said so.
    await waitFor(async () => ((await logs("stubborn")).includes("ready") ? true : undefined), "the trap to be set");
    const pid = node.pid(namespace.name, "stubborn")!;
    const started = Date.now();
    await core().deleteNamespacedPod({ name: "stubborn", namespace: namespace.name });
    await waitFor(async () => ((await logs("stubborn")).includes("got TERM") ? true : undefined), "SIGTERM to arrive");
    await gone("stubborn");
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1_900, `removed after ${elapsed} ms, before the 2 s grace`);
    assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
  });

  it("fails a pod past its activeDeadlineSeconds with reason DeadlineExceeded", async () => {
    await createPod("deadline", "exec sleep 300", { spec: { activeDeadlineSeconds: 1 } });
    const pod = await ended("deadline");
    assert.equal(pod.status?.phase, "Failed");
    assert.equal(pod.status?.reason, "DeadlineExceeded");
    assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 143);
  });

  it("follows a running container's log until it exits", async () => {
    await createPod("follow", "echo first; sleep 1; echo second");
    await podUntil("follow", (p) => p.status?.phase === "Running", "to run");
    assert.equal(await logs("follow", { follow: true }), "first\nsecond\n");
  });

  it("binds only pods whose nodeSelector its labels match", async () => {
    await createPod("elsewhere", "exit 0", { spec: { nodeSelector: { "kubernetes.io/hostname": "another-node" } } });
    await createPod("here", "exit 0", { spec: { nodeSelector: { "kubernetes.io/hostname": node.name } } });
    assert.equal((await ended("here")).spec?.nodeName, node.name);
    // Pods are handled in the order they were seen, so "elsewhere" had its chance first.
    assert.equal((await readPod("elsewhere")).spec?.nodeName, undefined);
  });

  it("registers a Ready Node that advertises its log server, and stop() kills its pods and deletes it", async () => {
    const other = await startFakeNode(admin, { images: { [SHELL_IMAGE]: ["/bin/sh"] }, namespace: namespace.name, labels: { pool: "other" } });
    try {
      const registered = await core().readNode({ name: other.name });
      assert.equal(registered.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
      assert.deepEqual(registered.status?.addresses?.map(({ type, address }) => ({ type, address })), [{ type: "InternalIP", address: "127.0.0.1" }]);
      assert.ok((registered.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? 0) > 0);
      assert.deepEqual(registered.spec?.taints ?? [], []);
      assert.equal(registered.status?.allocatable?.cpu, "8");

      await createPod("on-other", "exec sleep 300", { spec: { nodeSelector: { pool: "other" } } });
      await podUntil("on-other", (p) => p.status?.phase === "Running", "to run");
      const pid = other.pid(namespace.name, "on-other")!;
      await other.stop();
      assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
      await assert.rejects(core().readNode({ name: other.name }), (error: { code?: number }) => error.code === 404);
    } finally {
      await other.stop();
    }
  });

  it("reported no failed API calls", () => {
    assert.deepEqual(node.problems, []);
  });
});
