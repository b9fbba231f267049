import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { kubeBinaries, missingKubeBinaries } from "../tools.ts";
import { createKubeCertificates } from "./certificates.ts";
import { unwatchTempDir, watchTempDir } from "./leftover-watchdog.ts";
import { startManagedProcess, type ManagedProcess } from "./managed-process.ts";

/** Who a test talks to the API server as. */
export type KubeIdentity = "admin" | "restricted";

/** The admin is in group system:masters, which bypasses RBAC. */
export const ADMIN_USER = "corral-admin";
/** The restricted identity has no groups (beyond system:authenticated): it can do only what a Role binds to it. */
export const RESTRICTED_USER = "corral-scheduler";

export const KUBE_VERSION = "v1.36.3";
/** The apiserver's --service-cluster-ip-range; its first address is the kubernetes Service's. */
const SERVICE_CIDR = "10.0.0.0/24";
const READY_TIMEOUT_MS = 60_000;
const PORT_ATTEMPTS = 3;
const CONTROLLERS = [
  "job-controller",
  "garbage-collector-controller",
  "ttl-after-finished-controller",
  "serviceaccount-controller",
  "namespace-controller",
  "pod-garbage-collector-controller",
];

export interface KubeCluster {
  /** https://127.0.0.1:<port> */
  url: string;
  /** The CA that signed the API server's serving cert. */
  caPem: string;
  adminToken: string;
  restrictedToken: string;
  /** A ready client config for the identity; a fresh object on every call, so callers may change it. */
  kubeConfig(identity: KubeIdentity): KubeConfig;
  /** Path of a kubeconfig file for the identity (token and CA inline), written at start. */
  kubeconfigFile(identity: KubeIdentity): string;
  /** How long each component took to become ready, in milliseconds. */
  timings: { etcd: number; apiserver: number; controllerManager: number };
  /** The last lines of each component's log, for a failing test's message. */
  logTails(lines?: number): Promise<string>;
  /** Stops every process and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts etcd, kube-apiserver and kube-controller-manager on loopback, in a temp dir, with RBAC
 * and two token identities. Throws, with the component's log tail, when one fails to come up.
 */
export async function startKubeCluster(): Promise<KubeCluster> {
  const missing = missingKubeBinaries();
  if (missing) throw new Error(missing);
  const k8s = await import("@kubernetes/client-node");
  const bin = kubeBinaries();
  const dir = await mkdtemp(join(tmpdir(), "corral-kube-"));
  const keep = Boolean(process.env.CORRAL_KUBE_KEEP);
  if (!keep) watchTempDir(dir);
  const processes: ManagedProcess[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      // Reverse order: the controller manager and apiserver before the etcd they depend on.
      for (const p of processes.toReversed()) await p.stop();
      if (keep) return;
      await rm(dir, { recursive: true, force: true });
      unwatchTempDir(dir);
    })());
  const logTails = async (lines = 30) =>
    (await Promise.all(processes.map(async (p) => `--- ${p.name} (${p.logFile})\n${await p.tail(lines)}`))).join("\n");

  try {
    const certs = await createKubeCertificates(dir);
    const adminToken = randomBytes(24).toString("hex");
    const restrictedToken = randomBytes(24).toString("hex");
    const tokenFile = join(dir, "tokens.csv");
    // token,user,uid[,"group1,group2"]
    await writeFile(tokenFile, `${adminToken},${ADMIN_USER},${ADMIN_USER},"system:masters"\n${restrictedToken},${RESTRICTED_USER},${RESTRICTED_USER}\n`, { mode: 0o600 });

    let started = Date.now();
    const etcd = await startWithFreePorts(2, async ([client, peer]) => {
      const url = `http://127.0.0.1:${client}`;
      const peerUrl = `http://127.0.0.1:${peer}`;
      const p = await startManagedProcess("etcd", [
        bin.etcd,
        "--name=corral-test",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=corral-test=${peerUrl}`,
        // A throwaway store needs no durability; fsync dominates etcd's latency on a busy disk.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
      ], join(dir, "etcd.log"));
      processes.push(p);
      await waitUntil(p, "etcd /health", READY_TIMEOUT_MS, async () => (await get(`${url}/health`)).body.includes('"health":"true"'));
      return { process: p, url };
    });
    const etcdMs = Date.now() - started;

    started = Date.now();
    const apiserver = await startWithFreePorts(1, async ([port]) => {
      const url = `https://127.0.0.1:${port}`;
      const p = await startManagedProcess("kube-apiserver", [
        bin.kubeApiserver,
        `--etcd-servers=${etcd.url}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${port}`,
        `--cert-dir=${dir}`,
        `--tls-cert-file=${certs.servingCertFile}`,
        `--tls-private-key-file=${certs.servingKeyFile}`,
        `--client-ca-file=${certs.caCertFile}`,
        `--token-auth-file=${tokenFile}`,
        "--authorization-mode=RBAC",
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        "--service-account-issuer=https://kubernetes.default.svc",
        `--service-account-key-file=${certs.serviceAccountPublicKeyFile}`,
        `--service-account-signing-key-file=${certs.serviceAccountKeyFile}`,
        // Nothing serves the kubernetes Service's endpoints on loopback; without this the
        // apiserver keeps trying to publish 127.0.0.1 as one and logs errors.
        "--endpoint-reconciler-type=none",
        // The fake node publishes only an InternalIP (127.0.0.1); pods/log reaches it there. With no
        // --kubelet-certificate-authority the apiserver does not verify the kubelet's serving cert.
        "--kubelet-preferred-address-types=InternalIP",
        "--profiling=false",
      ], join(dir, "kube-apiserver.log"));
      processes.push(p);
      await waitUntil(p, "kube-apiserver /readyz", READY_TIMEOUT_MS, async () => {
        const response = await get(`${url}/readyz`, { ca: certs.caPem, token: adminToken });
        return response.status === 200;
      });
      return { process: p, url };
    });
    const apiserverMs = Date.now() - started;

    const kubeconfigText = (identity: KubeIdentity) =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "corral-test", cluster: { server: apiserver.url, "certificate-authority-data": Buffer.from(certs.caPem).toString("base64") } }],
        users: [{ name: identity, user: { token: identity === "admin" ? adminToken : restrictedToken } }],
        contexts: [{ name: identity, context: { cluster: "corral-test", user: identity } }],
        "current-context": identity,
      }, null, 2);
    const kubeconfigFiles = { admin: join(dir, "admin.kubeconfig"), restricted: join(dir, "restricted.kubeconfig") };
    for (const identity of ["admin", "restricted"] as const) {
      await writeFile(kubeconfigFiles[identity], kubeconfigText(identity), { mode: 0o600 });
    }
    const kubeConfig = (identity: KubeIdentity) => {
      const config = new k8s.KubeConfig();
      config.loadFromString(kubeconfigText(identity));
      return config;
    };

    started = Date.now();
    const controllerManager = await startManagedProcess("kube-controller-manager", [
      bin.kubeControllerManager,
      `--kubeconfig=${kubeconfigFiles.admin}`,
      "--leader-elect=false",
      `--controllers=${CONTROLLERS.join(",")}`,
      // It serves only health and metrics, which nothing here reads; 0 turns the port off.
      "--secure-port=0",
      "--profiling=false",
    ], join(dir, "kube-controller-manager.log"));
    processes.push(controllerManager);
    // The serviceaccount controller creating "default" in namespace default shows the controllers
    // run; pods are refused in a namespace that lacks it.
    const core = kubeConfig("admin").makeApiClient(k8s.CoreV1Api);
    await waitUntil(controllerManager, "the default ServiceAccount", READY_TIMEOUT_MS, async () =>
      core.readNamespacedServiceAccount({ name: "default", namespace: "default" }).then(() => true, () => false));
    const controllerManagerMs = Date.now() - started;

    // A component dying mid-run explains many later failures; say so where people look.
    for (const p of processes) {
      void p.exited.then(async ({ code, signal }) => {
        if (stopping) return;
        process.stderr.write(`kube test cluster: ${p.name} exited unexpectedly (code ${code}, signal ${signal})\n${await p.tail()}\n`);
      });
    }

    return {
      url: apiserver.url,
      caPem: certs.caPem,
      adminToken,
      restrictedToken,
      kubeConfig,
      kubeconfigFile: (identity) => kubeconfigFiles[identity],
      timings: { etcd: etcdMs, apiserver: apiserverMs, controllerManager: controllerManagerMs },
      logTails,
      stop,
    };
  } catch (error) {
    const tails = await logTails();
    await stop();
    throw new Error(`the kube test cluster failed to start: ${(error as Error).message}\n${tails}`, { cause: error });
  }

  // Ports are probed free and then handed to a binary, so another process may take one in between.
  async function startWithFreePorts<T extends { process: ManagedProcess }>(count: number, start: (ports: number[]) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const ports: number[] = [];
      while (ports.length < count) ports.push(await freePort());
      const started = processes.length;
      try {
        return await start(ports);
      } catch (error) {
        const p = processes.length > started ? processes.at(-1) : undefined;
        const portTaken = p !== undefined && (await p.tail(200)).includes("address already in use");
        if (!portTaken || attempt === PORT_ATTEMPTS) throw error;
        await p.stop();
        processes.pop();
      }
    }
  }
}

// One cluster per mocha process, started on first use and stopped by the root afterAll hook.
let shared: Promise<KubeCluster> | undefined;

/** The cluster shared by the whole test run. A failed start fails every caller with the same error. */
export function sharedKubeCluster(): Promise<KubeCluster> {
  return (shared ??= startKubeCluster());
}

/** Mocha root afterAll hook: stops the shared cluster, if one was started. */
export async function stopSharedKubeCluster(): Promise<void> {
  const starting = shared;
  shared = undefined;
  // A failed start has already stopped what it started.
  const cluster = await starting?.catch(() => undefined);
  await cluster?.stop();
}

async function waitUntil(p: ManagedProcess, what: string, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void p.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`${p.name} exited while waiting for ${what}`);
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A plain GET for readiness probes, before any client is set up; no keep-alive, so nothing lingers. */
function get(url: string, auth?: { ca: string; token: string }): Promise<{ status: number; body: string }> {
  const options = auth ? { ca: auth.ca, headers: { authorization: `Bearer ${auth.token}` } } : {};
  const send = url.startsWith("https:") ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { ...options, timeout: 5_000, agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      response.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}
