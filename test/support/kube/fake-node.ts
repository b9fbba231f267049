import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { access, constants, mkdir, mkdtemp, rm } from "node:fs/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { CoreV1Api, KubeConfig, V1Node, V1Pod } from "@kubernetes/client-node";
import { createSelfSignedServingCert } from "./certificates.ts";
import { ContainerWaiting, prepareContainerLaunch, type PodObjectReader } from "./container-launch.ts";
import { createContainerLog, DEFAULT_LOG_LIMIT_BYTES, type ContainerLog } from "./container-log.ts";
import { startKubeletLogServer } from "./kubelet-log-server.ts";
import { unwatchProcessGroup, unwatchTempDir, watchProcessGroup, watchTempDir } from "./leftover-watchdog.ts";
import { kubeNow, runningStatus, terminatedStatus, waitingStatus, type Termination } from "./pod-status.ts";

export interface FakeNodeOptions {
  /** Image name → argv of the local process that stands in for it. Any other image fails with ErrImagePull. */
  images: Record<string, string[]>;
  /** Default: fake-node-<random>. */
  name?: string;
  /** Only pods of this namespace are bound and run. Default: every namespace. */
  namespace?: string;
  /** Added to the node's labels (kubernetes.io/hostname, os and arch are always there); pods' nodeSelector must match. */
  labels?: Record<string, string>;
  /** Node capacity and allocatable. Default: 8 CPUs, 32Gi memory, 110 pods. */
  capacity?: Record<string, string>;
  /** What each container's log keeps (its last bytes). Default: 1 MiB. */
  logLimitBytes?: number;
}

export interface FakeNode {
  name: string;
  /** The pid of a pod's process while it runs (for tests that check a kill), else undefined. */
  pid(namespace: string, pod: string): number | undefined;
  /** Failed API calls and other surprises, also written to stderr; a passing test can assert none. */
  problems: string[];
  /** Kills every pod process, stops watching, deletes the Node. Idempotent. */
  stop(): Promise<void>;
}

/** A pod's first container as the node runs it. */
interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  /** The latest pod object seen. */
  pod: V1Pod;
  dir: string;
  log: ContainerLog;
  containerId: string;
  state: "preparing" | "waiting" | "running" | "exited";
  lastWaiting?: string;
  child?: ChildProcess;
  startedAt?: string;
  /** Set when the pod's activeDeadlineSeconds ran out, so the pod ends Failed with DeadlineExceeded. */
  deadlineExceeded?: boolean;
  deleting: boolean;
  timers: Set<NodeJS.Timeout>;
  /** Status patches in order: a terminated patch must never land before the running one. */
  statusChain: Promise<void>;
  /** Resolves when the process has ended and its output is read (at once if it never started). */
  ended: Promise<void>;
  markEnded: () => void;
}

const RETRY_MS = 500;
const SETPRIV = "/usr/bin/setpriv";
const DEFAULT_CAPACITY = { cpu: "8", memory: "32Gi", pods: "110", "ephemeral-storage": "100Gi" };

/**
 * A node that does the kubelet's part for the tests: registers a Ready Node, binds pending pods to
 * itself (there is no scheduler), runs each pod's first container as a local process (see
 * prepareContainerLaunch), reports pod status, serves container logs for pods/log, and honours pod
 * deletion: SIGTERM to the process group, SIGKILL after the grace, then the pod is deleted with
 * grace period 0. It never touches finalizers (the Job controller removes its own).
 */
export async function startFakeNode(kubeConfig: KubeConfig, options: FakeNodeOptions): Promise<FakeNode> {
  const k8s = await import("@kubernetes/client-node");
  const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  const mergePatch = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
  const name = options.name ?? `fake-node-${randomBytes(3).toString("hex")}`;
  const labels: Record<string, string> = { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", ...options.labels };
  const dir = await mkdtemp(join(tmpdir(), "corral-fake-node-"));
  watchTempDir(dir);
  const runs = new Map<string, PodRun>(); // by pod uid
  const byName = new Map<string, PodRun>(); // by namespace/name, for logs
  const bindingTried = new Set<string>();
  const removing = new Set<string>();
  const problems: string[] = [];
  let stopped = false;

  const report = (what: string, error?: unknown) => {
    if (stopped) return;
    const message = `fake node ${name}: ${what}${error === undefined ? "" : `: ${describe(error)}`}`;
    problems.push(message);
    process.stderr.write(`${message}\n`);
  };
  const reader: PodObjectReader = {
    secret: (namespace, secretName) => ifExists(core.readNamespacedSecret({ namespace, name: secretName })),
    configMap: (namespace, configMapName) => ifExists(core.readNamespacedConfigMap({ namespace, name: configMapName })),
  };

  const logServer = await startKubeletLogServer({
    ...(await createSelfSignedServingCert(dir, name)),
    find: (namespace, pod, container) => {
      const run = byName.get(`${namespace}/${pod}`);
      return run?.pod.spec?.containers[0]?.name === container ? run.log : undefined;
    },
  });

  try {
    await registerNode(core, mergePatch, name, labels, options.capacity ?? DEFAULT_CAPACITY, logServer.port);
  } catch (error) {
    await logServer.close();
    await rm(dir, { recursive: true, force: true });
    unwatchTempDir(dir);
    throw new Error(`the fake node could not register Node ${name}: ${describe(error)}`, { cause: error });
  }

  const path = options.namespace ? `/api/v1/namespaces/${options.namespace}/pods` : "/api/v1/pods";
  const list = options.namespace ? () => core.listNamespacedPod({ namespace: options.namespace! }) : () => core.listPodForAllNamespaces();
  const informer = k8s.makeInformer<V1Pod>(kubeConfig, path, list);
  informer.on("add", onPod);
  informer.on("update", onPod);
  informer.on("delete", onPodDeleted);
  let restarting: Promise<void> | undefined;
  // The client's list-watch stops on an error other than an expired resourceVersion; a kubelet keeps watching.
  informer.on("error", (error) => {
    if (stopped) return;
    report("the pod watch failed; restarting it", error);
    restarting = new Promise<void>((resolve) => setTimeout(resolve, RETRY_MS)).then(() => (stopped ? undefined : informer.start()));
  });
  const starting = informer.start();
  await starting;

  function onPod(pod: V1Pod): void {
    if (stopped) return;
    const uid = pod.metadata?.uid;
    if (!uid) return;
    if (!pod.spec?.nodeName) return bind(pod, uid);
    if (pod.spec.nodeName !== name) return;
    const run = runs.get(uid);
    if (run) run.pod = pod;
    if (pod.metadata!.deletionTimestamp) {
      if (run) terminate(run);
      else removePod(pod.metadata!.namespace!, pod.metadata!.name!, uid);
      return;
    }
    if (!run && pod.status?.phase !== "Succeeded" && pod.status?.phase !== "Failed") start(pod, uid);
  }

  function onPodDeleted(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    bindingTried.delete(uid);
    removing.delete(uid);
    const run = runs.get(uid);
    if (!run) return;
    // Gone from the API (deleted with grace 0, perhaps by someone else): nothing may keep running.
    run.deleting = true;
    clearTimers(run);
    if (run.state === "running") signalGroup(run.child!.pid!, "SIGKILL");
    runs.delete(uid);
    if (byName.get(`${run.namespace}/${run.name}`) === run) byName.delete(`${run.namespace}/${run.name}`);
    void run.ended.then(() => rm(run.dir, { recursive: true, force: true }));
  }

  function bind(pod: V1Pod, uid: string): void {
    if (pod.metadata!.deletionTimestamp || bindingTried.has(uid)) return;
    if (pod.status?.phase && pod.status.phase !== "Pending") return;
    const selector = pod.spec?.nodeSelector ?? {};
    if (!Object.entries(selector).every(([key, value]) => labels[key] === value)) return;
    bindingTried.add(uid);
    const { namespace, name: podName } = pod.metadata as { namespace: string; name: string };
    core
      .createNamespacedPodBinding({
        namespace,
        name: podName,
        body: { apiVersion: "v1", kind: "Binding", metadata: { name: podName, namespace, uid }, target: { apiVersion: "v1", kind: "Node", name } },
      })
      .catch((error: unknown) => {
        // 409: bound already (another fake node won); 404: the pod is gone.
        if (statusCode(error) === 409 || statusCode(error) === 404) return;
        bindingTried.delete(uid);
        report(`binding pod ${namespace}/${podName}`, error);
      });
  }

  function start(pod: V1Pod, uid: string): void {
    const { namespace, name: podName } = pod.metadata as { namespace: string; name: string };
    let markEnded!: () => void;
    const run: PodRun = {
      uid,
      namespace,
      name: podName,
      pod,
      dir: join(dir, "pods", uid),
      log: createContainerLog(options.logLimitBytes ?? DEFAULT_LOG_LIMIT_BYTES),
      containerId: `fake://${randomBytes(16).toString("hex")}`,
      state: "preparing",
      deleting: false,
      timers: new Set(),
      statusChain: Promise.resolve(),
      ended: new Promise<void>((resolve) => (markEnded = resolve)),
      markEnded: () => markEnded(),
    };
    runs.set(uid, run);
    byName.set(`${namespace}/${podName}`, run);
    void launch(run).catch((error: unknown) => {
      report(`starting pod ${namespace}/${podName}`, error);
      run.markEnded();
    });
  }

  async function launch(run: PodRun): Promise<void> {
    if (run.deleting || stopped) return run.markEnded();
    let launchPlan;
    try {
      await mkdir(run.dir, { recursive: true });
      launchPlan = await prepareContainerLaunch(run.pod, run.dir, options.images, reader);
    } catch (error) {
      if (!(error instanceof ContainerWaiting)) throw error;
      if (run.deleting || stopped) return run.markEnded();
      run.state = "waiting";
      if (run.lastWaiting !== `${error.reason}: ${error.message}`) {
        run.lastWaiting = `${error.reason}: ${error.message}`;
        patchStatus(run, waitingStatus(run.pod, error.reason, error.message));
      }
      // Like the kubelet's sync loop: a Secret created after the pod is picked up on a later try.
      if (error.retry) schedule(run, RETRY_MS, () => void launch(run).catch((e: unknown) => report(`starting pod ${run.namespace}/${run.name}`, e)));
      else run.markEnded();
      return;
    }
    const { argv, env, cwd } = launchPlan;
    const executable = await findExecutable(argv[0]!, env.PATH ?? "", cwd);
    if (run.deleting || stopped) return run.markEnded();
    const startedAt = kubeNow();
    if (!executable) {
      // What a runtime reports when exec fails: the container "ran" and ended with 128.
      run.state = "exited";
      const message = `exec: "${argv[0]}": executable file not found in $PATH`;
      patchStatus(run, terminatedStatus(run.pod, { exitCode: 128, reason: "StartError", message, startedAt, finishedAt: startedAt }, run.containerId));
      return run.markEnded();
    }
    const [command, ...args] = existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "SIGKILL", "--", executable, ...argv.slice(1)] : [executable, ...argv.slice(1)];
    // Its own process group, as a container has its own PID namespace: a kill reaches its children too.
    const child = spawn(command!, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const spawned = new Promise<Error | undefined>((resolve) => {
      child.once("spawn", () => resolve(undefined));
      child.once("error", resolve);
    });
    if (child.pid === undefined) {
      run.state = "exited";
      const error = await spawned;
      patchStatus(run, terminatedStatus(run.pod, { exitCode: 128, reason: "StartError", message: error?.message ?? "spawn failed", startedAt, finishedAt: kubeNow() }, run.containerId));
      return run.markEnded();
    }
    // Running from here on, for terminate() and stop(): the pid exists.
    run.child = child;
    run.state = "running";
    run.startedAt = startedAt;
    child.stdout!.on("data", (chunk: Buffer) => run.log.append(chunk));
    child.stderr!.on("data", (chunk: Buffer) => run.log.append(chunk));
    const pid = child.pid;
    watchProcessGroup(pid);
    patchStatus(run, runningStatus(run.pod, startedAt, run.containerId));
    const deadline = run.pod.spec?.activeDeadlineSeconds;
    if (deadline !== undefined) {
      schedule(run, deadline * 1000, () => {
        run.deadlineExceeded = true;
        stopProcess(run, gracePeriod(run.pod));
      });
    }
    // When a container's main process ends, the runtime kills what is left in it; that also closes
    // pipes that a leftover child would hold open.
    child.once("exit", () => signalGroup(pid, "SIGKILL"));
    child.once("close", (code, signal) => {
      unwatchProcessGroup(pid);
      clearTimers(run);
      run.log.close();
      run.state = "exited";
      const exitCode = code ?? 128 + (signal ? osConstants.signals[signal] : 0);
      const end: Termination = { exitCode, reason: exitCode === 0 ? "Completed" : "Error", startedAt, finishedAt: kubeNow() };
      const podReason = run.deadlineExceeded ? { reason: "DeadlineExceeded", message: `Pod was active on the node longer than the specified deadline` } : undefined;
      patchStatus(run, terminatedStatus(run.pod, end, run.containerId, podReason));
      run.markEnded();
      if (run.deleting) removePod(run.namespace, run.name, run.uid, run);
    });
  }

  /** The pod has a deletionTimestamp: stop the process within the grace, then remove the pod. */
  function terminate(run: PodRun): void {
    if (run.deleting) return;
    run.deleting = true;
    clearTimers(run);
    if (run.state === "running") stopProcess(run, gracePeriod(run.pod)); // the close handler removes the pod
    else removePod(run.namespace, run.name, run.uid, run);
  }

  function stopProcess(run: PodRun, graceSeconds: number): void {
    const pid = run.child!.pid!;
    if (graceSeconds <= 0) return signalGroup(pid, "SIGKILL");
    signalGroup(pid, "SIGTERM");
    schedule(run, graceSeconds * 1000, () => signalGroup(pid, "SIGKILL"));
  }

  /** Deletes the pod with grace period 0, after its final status is written; its finalizers still hold it until their owners act. */
  function removePod(namespace: string, podName: string, uid: string, run?: PodRun): void {
    if (removing.has(uid)) return;
    removing.add(uid);
    void (run?.statusChain ?? Promise.resolve())
      // In the body: the apiserver ignores the query's delete options when there is a body.
      .then(() => core.deleteNamespacedPod({ namespace, name: podName, body: { gracePeriodSeconds: 0, preconditions: { uid } } }))
      .catch((error: unknown) => {
        if (statusCode(error) === 404 || statusCode(error) === 409) return;
        removing.delete(uid);
        report(`deleting pod ${namespace}/${podName}`, error);
      });
  }

  function patchStatus(run: PodRun, body: object): void {
    run.statusChain = run.statusChain
      .then(() => (stopped ? undefined : core.patchNamespacedPodStatus({ namespace: run.namespace, name: run.name, body }, mergePatch)))
      .then(
        () => undefined,
        (error: unknown) => {
          if (statusCode(error) !== 404) report(`patching the status of pod ${run.namespace}/${run.name}`, error);
        },
      );
  }

  function schedule(run: PodRun, ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      run.timers.delete(timer);
      if (!stopped) action();
    }, ms);
    run.timers.add(timer);
  }

  let stopping: Promise<void> | undefined;
  return {
    name,
    pid: (namespace, pod) => {
      const run = byName.get(`${namespace}/${pod}`);
      return run?.state === "running" ? run.child?.pid : undefined;
    },
    problems,
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        // A start still listing would open a watch after stop(); let it finish first.
        await starting.catch(() => {});
        await restarting?.catch(() => {});
        await informer.stop();
        for (const run of runs.values()) {
          clearTimers(run);
          // A run still preparing notices `stopped` when its await returns, and ends itself.
          if (run.state === "running") signalGroup(run.child!.pid!, "SIGKILL");
          else if (run.state !== "preparing") run.markEnded();
        }
        await Promise.all([...runs.values()].map((run) => run.ended));
        await logServer.close();
        await core.deleteNode({ name }).catch(() => {});
        await rm(dir, { recursive: true, force: true });
        unwatchTempDir(dir);
      })()),
  };
}

async function registerNode(core: CoreV1Api, mergePatch: object, name: string, labels: Record<string, string>, capacity: Record<string, string>, port: number): Promise<void> {
  const now = kubeNow();
  const condition = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: now });
  const status = {
    capacity,
    allocatable: capacity,
    conditions: [
      condition("Ready", "True", "KubeletReady", "the fake node is ready"),
      condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "the fake node has sufficient memory"),
      condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "the fake node has no disk pressure"),
      condition("PIDPressure", "False", "KubeletHasSufficientPID", "the fake node has sufficient PID"),
    ],
    // Only an InternalIP: the apiserver reaches this node's log server there.
    addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
    daemonEndpoints: { kubeletEndpoint: { Port: port } },
    nodeInfo: {
      machineID: name,
      systemUUID: name,
      bootID: name,
      kernelVersion: "",
      osImage: "corral fake node",
      containerRuntimeVersion: "fake://0",
      kubeletVersion: "v1.36.3",
      kubeProxyVersion: "",
      operatingSystem: "linux",
      architecture: "amd64",
    },
  };
  const node: V1Node = { apiVersion: "v1", kind: "Node", metadata: { name, labels }, spec: {} };
  await core.createNode({ body: node });
  // Status through its subresource, as a plain JSON body (the typed client would want Date objects).
  // The TaintNodesByCondition admission plugin taints a new node not-ready until node-lifecycle
  // (not run here) lifts it; the taint would mislead anyone reading the Node.
  await core.patchNodeStatus({ name, body: { status } }, mergePatch as never);
  await core.patchNode({ name, body: { spec: { taints: null } } }, mergePatch as never);
}

function gracePeriod(pod: V1Pod): number {
  return pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
}

function clearTimers(run: PodRun): void {
  for (const timer of run.timers) clearTimeout(timer);
  run.timers.clear();
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function findExecutable(command: string, path: string, cwd: string): Promise<string | undefined> {
  const candidates = command.includes("/") ? [resolve(cwd, command)] : path.split(":").filter(isAbsolute).map((dir) => join(dir, command));
  for (const candidate of candidates) {
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return undefined;
}

async function ifExists<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (error) {
    if (statusCode(error) === 404) return undefined;
    throw error;
  }
}

function statusCode(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "number" ? error.code : undefined;
}

function describe(error: unknown): string {
  if (typeof error === "object" && error !== null && "body" in error) {
    const body = (error as { body: unknown }).body;
    const message = typeof body === "string" ? body : JSON.stringify(body);
    return `${statusCode(error) ?? ""} ${message}`.trim();
  }
  return error instanceof Error ? error.message : String(error);
}
