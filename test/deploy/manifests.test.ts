import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parse, parseAllDocuments } from "yaml";
import { REQUIRED_ACCESS } from "@corral/scheduler/runtime/kubernetes/preflight-kubernetes.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { CONTROL_PLANE_NODE_FLAGS } from "@corral/control-plane/node-flags.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { webConfig } from "@corral/web/config.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { TOOLS_BIN } from "../support/tools.ts";
import {
  copies,
  DockerIgnore,
  effective,
  effectiveEnv,
  execForm,
  expandGlobalArgs,
  filesUnder,
  parseDockerfile,
  readText,
  stageChain,
  stageNamed,
  type Dockerfile,
  type Stage,
} from "./dockerfile.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const OVERLAY = "deploy/k8s/overlays/dev";
const NAMESPACE = "corral-dev";
const NON_ROOT_UID = 10001;

/** The services as their code defines them: the listen variable and its default port. */
const SERVICES = [
  { name: "scheduler", listenVar: "CORRAL_SCHEDULER_LISTEN", config: schedulerConfig as Record<string, unknown> },
  { name: "control-plane", listenVar: "CORRAL_CONTROL_PLANE_LISTEN", config: controlPlaneConfig as Record<string, unknown> },
  { name: "artifact", listenVar: "CORRAL_ARTIFACT_LISTEN", config: artifactConfig as Record<string, unknown> },
].map((s) => {
  const schema = s.config[s.listenVar] as { parse(v: unknown): { host: string; port: number } };
  return { ...s, port: schema.parse(undefined).port, image: `corral-${s.name}`, resource: `corral-${s.name}` };
});

/** The dashboard: a service like the others, but HTTP/1.1 for browsers and no database. */
const WEB = (() => {
  const listen = (webConfig.CORRAL_WEB_LISTEN as { parse(v: unknown): { host: string; port: number } }).parse(undefined);
  return { name: "web", listenVar: "CORRAL_WEB_LISTEN", config: webConfig as Record<string, unknown>, port: listen.port, image: "corral-web", resource: "corral-web" };
})();
/** Every image built from service.Dockerfile, and every Deployment of the base. */
const ALL_SERVICES = [...SERVICES, WEB];

/** Variables set in a Deployment ahead of the code that reads them, and who will read them. */
const PENDING_ENV: Record<string, string[]> = {
  // The scheduler's own reads of run artifacts (the service token is how it will).
  scheduler: ["CORRAL_ARTIFACT_URL", "CORRAL_ARTIFACT_SERVICE_TOKEN"],
};

/** Node's own flags a service runs with (NODE_OPTIONS in its Deployment), as its code names them. */
const NODE_FLAGS: Record<string, readonly string[]> = { "control-plane": CONTROL_PLANE_NODE_FLAGS };

// ---------------------------------------------------------------- Kubernetes object shapes

interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [field: string]: unknown;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}
interface Probe {
  grpc?: { port: number; service?: string };
  exec?: { command: string[] };
  httpGet?: { path: string; port: number | string };
  tcpSocket?: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: unknown };
}
interface Container {
  name: string;
  image: string;
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  enableServiceLinks?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: SecurityContext;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; emptyDir?: unknown; hostPath?: unknown; persistentVolumeClaim?: { claimName: string } }[];
}
interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    strategy?: { type: string };
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}
interface Service extends K8sObject {
  spec: { selector: Record<string, string>; ports: { name?: string; port: number; targetPort?: number | string }[] };
}

interface SkaffoldArtifact {
  image: string;
  context?: string;
  docker?: { dockerfile?: string; target?: string; buildArgs?: Record<string, string> };
}
interface SkaffoldConfig {
  apiVersion: string;
  kind: string;
  build: { artifacts: SkaffoldArtifact[] };
  manifests: { kustomize: { paths: string[] } };
  deploy: { kubectl?: unknown };
  resourceSelector?: { allow?: { groupKind: string; image?: string[] }[] };
  portForward: { resourceType: string; resourceName: string; namespace?: string; port: number; localPort?: number }[];
}

// ---------------------------------------------------------------- helpers

function readYaml<T>(path: string): T {
  return parse(readText(join(ROOT, path))) as T;
}

function parseDocuments(text: string, source: string): K8sObject[] {
  const documents = parseAllDocuments(text);
  const objects: K8sObject[] = [];
  for (const document of documents) {
    assert.deepEqual(document.errors.map(String), [], `${source}: YAML errors`);
    const value = document.toJS() as K8sObject | null;
    if (value !== null) objects.push(value);
  }
  return objects;
}

function imageName(image: string): string {
  return image.replace(/@sha256:[0-9a-f]+$/, "").replace(/:[^/:]+$/, "");
}

/** A Kubernetes quantity ("100m", "512Mi", "1") as a number, to compare requests with limits. */
function quantity(value: string | number): number {
  const match = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(value));
  assert.ok(match, `not a quantity: ${value}`);
  const scale: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(match[1]) * (match[2] ? scale[match[2]]! : 1);
}

/** Every string scalar in a value, with its path, for scanning manifests for secrets. */
function* strings(value: unknown, path = ""): Generator<[string, string]> {
  if (typeof value === "string") yield [path, value];
  else if (Array.isArray(value)) for (const [i, v] of value.entries()) yield* strings(v, `${path}[${i}]`);
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) yield* strings(v, `${path}.${k}`);
}

const CREDENTIAL_URL = /[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:[^/\s@]+@/i;
const SECRET_NAME = /password|passwd|secret|token|credential|database_url|private[_-]?key/i;

/** Problems a pod template has under the restricted Pod Security Standard and our rules. */
function podProblems(owner: string, pod: PodSpec): string[] {
  const problems: string[] = [];
  const podContext = pod.securityContext ?? {};
  // Pod-level defaults for every container, which may repeat but not weaken them.
  if (podContext.runAsNonRoot !== true) problems.push(`${owner}: pod runAsNonRoot is not true`);
  if (podContext.runAsUser === 0) problems.push(`${owner}: pod runs as uid 0`);
  if (podContext.seccompProfile?.type !== "RuntimeDefault") problems.push(`${owner}: pod seccomp is not RuntimeDefault`);
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) problems.push(`${owner}: host namespaces`);
  if (pod.volumes?.some((v) => v.hostPath)) problems.push(`${owner}: hostPath volume`);
  if (typeof pod.terminationGracePeriodSeconds !== "number") problems.push(`${owner}: no terminationGracePeriodSeconds`);
  const containers = [...(pod.initContainers ?? []), ...pod.containers];
  if (containers.length === 0) problems.push(`${owner}: no containers`);
  for (const c of containers) {
    const where = `${owner}/${c.name}`;
    const sc = c.securityContext ?? {};
    if (sc.runAsNonRoot === false) problems.push(`${where}: runAsNonRoot is false`);
    if ((sc.runAsUser ?? podContext.runAsUser) === 0) problems.push(`${where}: runs as uid 0`);
    if (sc.seccompProfile && sc.seccompProfile.type !== "RuntimeDefault") problems.push(`${where}: seccomp is ${sc.seccompProfile.type}`);
    if (sc.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`);
    if (sc.privileged) problems.push(`${where}: privileged`);
    if (sc.readOnlyRootFilesystem !== true) problems.push(`${where}: readOnlyRootFilesystem is not true`);
    if (!sc.capabilities?.drop?.includes("ALL")) problems.push(`${where}: capabilities do not drop ALL`);
    if ((sc.capabilities?.add ?? []).length > 0) problems.push(`${where}: adds capabilities ${sc.capabilities!.add!.join(",")}`);
    for (const kind of ["requests", "limits"] as const) {
      for (const resource of ["cpu", "memory"]) {
        if (c.resources?.[kind]?.[resource] === undefined) problems.push(`${where}: no ${resource} ${kind}`);
      }
    }
    for (const resource of ["cpu", "memory"]) {
      const request = c.resources?.requests?.[resource];
      const limit = c.resources?.limits?.[resource];
      if (request !== undefined && limit !== undefined && quantity(request) > quantity(limit)) {
        problems.push(`${where}: ${resource} request ${request} exceeds limit ${limit}`);
      }
    }
    const tmp = c.volumeMounts?.find((m) => m.mountPath === "/tmp");
    if (!tmp) problems.push(`${where}: no volume at /tmp (the root filesystem is read-only)`);
    else if (!pod.volumes?.find((v) => v.name === tmp.name)?.emptyDir) problems.push(`${where}: /tmp is not an emptyDir`);
  }
  return problems;
}

const run = promisify(execFile);

function kustomizePath(): string {
  return process.env.CORRAL_KUSTOMIZE ?? `${TOOLS_BIN}kustomize`;
}

// ---------------------------------------------------------------- the tests

describe("deploy assets", () => {
  let skaffold: SkaffoldConfig;
  before(() => {
    skaffold = readYaml<SkaffoldConfig>("skaffold.yaml");
  });

  describe("skaffold.yaml", () => {
    it("is a skaffold v4 Config that renders the dev overlay with kustomize and deploys with kubectl", () => {
      assert.match(skaffold.apiVersion, /^skaffold\/v4(beta\d+)?$/);
      assert.equal(skaffold.kind, "Config");
      assert.deepEqual(skaffold.manifests.kustomize.paths, [OVERLAY]);
      assert.ok(existsSync(join(ROOT, OVERLAY, "kustomization.yaml")), `${OVERLAY}/kustomization.yaml is missing`);
      assert.ok(skaffold.deploy.kubectl !== undefined, "deploy.kubectl is not set");
    });

    it("builds the three services, the dashboard and the agent, each from a Dockerfile and target that exist", () => {
      assert.deepEqual(
        skaffold.build.artifacts.map((a) => a.image).sort(),
        ["corral-agent", "corral-artifact", "corral-control-plane", "corral-scheduler", "corral-web"],
      );
      for (const artifact of skaffold.build.artifacts) {
        assert.equal(artifact.context ?? ".", ".", `${artifact.image}: the context must be the repository root (npm workspaces)`);
        const dockerfile = artifact.docker?.dockerfile;
        assert.ok(dockerfile, `${artifact.image}: no docker.dockerfile`);
        assert.ok(existsSync(join(ROOT, dockerfile)), `${artifact.image}: ${dockerfile} does not exist`);
        assert.ok(existsSync(join(ROOT, `${dockerfile}.dockerignore`)), `${artifact.image}: ${dockerfile}.dockerignore does not exist`);
        const target = artifact.docker?.target;
        assert.ok(target, `${artifact.image}: no docker.target`);
        assert.ok(stageNamed(parseDockerfile(readText(join(ROOT, dockerfile))), target), `${artifact.image}: ${dockerfile} has no stage ${target}`);
      }
    });

    it("port-forwards each service's port, the dashboard's, and the Jaeger UI, from its Service in the dev namespace", () => {
      assert.deepEqual(
        skaffold.portForward.map((f) => [f.resourceType.toLowerCase(), f.resourceName, f.namespace, f.port, f.localPort]),
        [...ALL_SERVICES.map((s) => ["service", s.resource, NAMESPACE, s.port, s.port]), ["service", "corral-jaeger", NAMESPACE, 16686, 16686]],
      );
    });
  });

  describe("Dockerfiles", () => {
    const rootPackage = JSON.parse(readText(join(ROOT, "package.json"))) as { workspaces: string[]; devDependencies: Record<string, string> };
    const nodeVersion = rootPackage.devDependencies["node"];
    const workspaces = rootPackage.workspaces;
    // The Dockerfiles skaffold builds (that one is missing is the skaffold.yaml tests' finding).
    const byPath = new Map<string, { dockerfile: Dockerfile; ignore: DockerIgnore }>();
    before(() => {
      for (const artifact of skaffold.build.artifacts) {
        const path = artifact.docker?.dockerfile;
        if (!path || !existsSync(join(ROOT, path)) || !existsSync(join(ROOT, `${path}.dockerignore`))) continue;
        byPath.set(path, {
          dockerfile: parseDockerfile(readText(join(ROOT, path))),
          ignore: new DockerIgnore(readText(join(ROOT, `${path}.dockerignore`))),
        });
      }
      assert.ok(byPath.size > 0, "no Dockerfile to check");
    });
    const targetOf = (image: string) => {
      const artifact = skaffold.build.artifacts.find((a) => a.image === image);
      assert.ok(artifact, `no skaffold artifact ${image}`);
      const parsed = byPath.get(artifact.docker?.dockerfile ?? "");
      assert.ok(parsed, `${image}: its Dockerfile is missing`);
      const stage = stageNamed(parsed.dockerfile, artifact.docker?.target ?? "");
      assert.ok(stage, `${image}: its target stage is missing`);
      return { dockerfile: parsed.dockerfile, stage };
    };

    it("start from node:<the Node the repository pins>-bookworm-slim", () => {
      assert.match(nodeVersion ?? "", /^24\.\d+\.\d+$/, "package.json devDependencies.node is not an exact Node 24 version");
      for (const [path, { dockerfile }] of byPath) {
        assert.equal(dockerfile.globalArgs.get("NODE_VERSION"), nodeVersion, `${path}: ARG NODE_VERSION`);
        // With the ARG defaults (the agent's BASE_IMAGE is overridden only where no registry is reachable).
        const images = dockerfile.stages.map((s) => expandGlobalArgs(dockerfile, s.from)).filter((from) => !stageNamed(dockerfile, from));
        assert.deepEqual([...new Set(images)], [`node:${nodeVersion}-bookworm-slim`], `${path}: base images`);
      }
    });

    it("run each service's main.ts as uid 10001, listening on 0.0.0.0 at its port", () => {
      for (const service of ALL_SERVICES) {
        const { dockerfile, stage } = targetOf(service.image);
        const main = `services/${service.name}/src/main.ts`;
        assert.deepEqual(execForm(effective(dockerfile, stage, "CMD")), ["node", main], `${service.image}: CMD`);
        assert.equal(effective(dockerfile, stage, "ENTRYPOINT"), undefined, `${service.image}: ENTRYPOINT`);
        assert.ok(existsSync(join(ROOT, main)), `${main} does not exist`);
        assert.equal(effective(dockerfile, stage, "USER")?.args, `${NON_ROOT_UID}:${NON_ROOT_UID}`, `${service.image}: USER`);
        assert.equal(effectiveEnv(dockerfile, stage).get(service.listenVar), `0.0.0.0:${service.port}`, `${service.image}: ${service.listenVar}`);
      }
    });

    it("install only the production dependencies of the workspace an image runs", () => {
      const targets = [
        ...ALL_SERVICES.map((s) => ({ image: s.image, workspace: `services/${s.name}` })),
        { image: "corral-agent", workspace: "agent" },
      ];
      for (const { image, workspace } of targets) {
        const { dockerfile, stage } = targetOf(image);
        // The stages whose files the image contains: its own chain and what it copies --from.
        const sources = new Set<Stage>(stageChain(dockerfile, stage));
        for (const s of [...sources]) {
          for (const c of copies(s)) if (c.from) stageChain(dockerfile, stageNamed(dockerfile, c.from)!).forEach((x) => sources.add(x));
        }
        const installs = [...sources]
          .flatMap((s) => s.instructions)
          .filter((i) => i.keyword === "RUN" && /\bnpm (ci|install|i)\b/.test(i.args));
        assert.equal(installs.length, 1, `${image}: expected one npm install, found ${installs.length}`);
        const args = installs[0]!.args;
        assert.match(args, /\bnpm ci\b/, `${image}: not npm ci (the lock file)`);
        assert.match(args, /--omit=dev\b/, `${image}: devDependencies are installed`);
        assert.match(args, new RegExp(`--workspace=${workspace}(\\s|$)`), `${image}: not limited to ${workspace}`);
        assert.doesNotMatch(args, /--workspaces\b|--include-workspace-root\b/, `${image}: installs more than ${workspace}`);
      }
    });

    it("run the agent's main.ts as uid 10001, with git", () => {
      const { dockerfile, stage } = targetOf("corral-agent");
      assert.deepEqual(execForm(effective(dockerfile, stage, "CMD")), ["node", "agent/src/main.ts"]);
      const entrypoint = execForm(effective(dockerfile, stage, "ENTRYPOINT"));
      if (entrypoint) assert.deepEqual(entrypoint, ["/usr/bin/tini", "--"], "an ENTRYPOINT other than tini");
      assert.equal(effective(dockerfile, stage, "USER")?.args, `${NON_ROOT_UID}:${NON_ROOT_UID}`);
      const apt = stageChain(dockerfile, stage).flatMap((s) => s.instructions).filter((i) => i.keyword === "RUN" && /apt-get install/.test(i.args));
      assert.ok(apt.some((i) => /\sgit(\s|$)/.test(i.args)), "git is not installed");
    });

    it("copy the manifest of every workspace, as npm ci checks the lock file against all of them", () => {
      assert.ok(workspaces.length > 0);
      for (const [path, { dockerfile }] of byPath) {
        const copied = new Set(dockerfile.stages.flatMap(copies).filter((c) => !c.from).flatMap((c) => c.sources.map((s) => posix.normalize(s))));
        for (const file of ["package.json", "package-lock.json", ...workspaces.map((w) => `${w}/package.json`)]) {
          assert.ok(existsSync(join(ROOT, file)), `${file} does not exist`);
          assert.ok(copied.has(file), `${path} does not copy ${file}`);
        }
      }
    });

    it("copy only paths that exist and that their ignore file lets into the build context", () => {
      for (const [path, { dockerfile, ignore }] of byPath) {
        for (const c of dockerfile.stages.flatMap(copies).filter((c) => !c.from)) {
          for (const source of c.sources) {
            const files = filesUnder(ROOT, source);
            assert.ok(files.length > 0, `${path} line ${c.instruction.line}: ${source} does not exist (or is empty)`);
            const sent = files.filter((f) => !ignore.ignores(f));
            assert.ok(sent.length > 0, `${path} line ${c.instruction.line}: ${source} is excluded by ${path}.dockerignore`);
          }
        }
      }
    });

    it("keep local installs, tests and secrets-prone files out of the build context", () => {
      for (const [path, { ignore }] of byPath) {
        for (const file of ["node_modules/yaml/package.json", "plumbing/node_modules/x/index.js", "plumbing/src/node_modules/x/index.js", ".git/config", ".env", ".cache/tools/bin/kustomize", ".corral/work/x", "test/deploy/manifests.test.ts", "plumbing/src/config.test.ts", "skaffold.yaml"]) {
          assert.ok(ignore.ignores(file), `${path}.dockerignore lets ${file} in`);
        }
      }
    });
  });

  describe("dockerignore matching (moby/patternmatcher semantics)", () => {
    it("re-includes below an excluded parent and excludes ** patterns anywhere", () => {
      const ignore = new DockerIgnore("*\n!src/\n!services/*/src\n**/node_modules\n# comment\n");
      assert.equal(ignore.ignores("README.md"), true);
      assert.equal(ignore.ignores("src/a/b.ts"), false);
      assert.equal(ignore.ignores("services/x/src/main.ts"), false);
      assert.equal(ignore.ignores("services/x/test/main.ts"), true);
      assert.equal(ignore.ignores("src/node_modules/a.js"), true);
      assert.equal(ignore.ignores("services/x/src/node_modules/a.js"), true);
    });
  });

  describe("Kubernetes base (static)", () => {
    const base = "deploy/k8s/base";
    let objects: K8sObject[] = [];
    before(() => {
      const kustomization = readYaml<{ resources: string[] }>(`${base}/kustomization.yaml`);
      objects = kustomization.resources.flatMap((r) => {
        assert.ok(existsSync(join(ROOT, base, r)), `${base}/${r} does not exist`);
        return parseDocuments(readText(join(ROOT, base, r)), `${base}/${r}`);
      });
    });

    it("holds the three services and the dashboard, namespace-agnostic", () => {
      for (const kind of ["Deployment", "Service", "ServiceAccount"]) {
        assert.deepEqual(objects.filter((o) => o.kind === kind).map((o) => o.metadata.name).sort(), ALL_SERVICES.map((s) => s.resource).sort(), kind);
      }
      for (const o of objects) assert.equal(o.metadata.namespace, undefined, `${o.kind}/${o.metadata.name} sets a namespace`);
    });

    it("holds no credentials: no Secrets, no URLs with passwords, secret-looking variables only by reference", () => {
      assert.ok(objects.length > 0);
      for (const o of objects) {
        const where = `${o.kind}/${o.metadata.name}`;
        assert.notEqual(o.kind, "Secret", `${where}: a Secret in the base`);
        for (const [path, value] of strings(o)) assert.doesNotMatch(value, CREDENTIAL_URL, `${where}${path}: a URL with credentials`);
        if (o.kind !== "Deployment") continue;
        for (const c of (o as Workload).spec.template.spec.containers) {
          for (const e of c.env ?? []) {
            if (SECRET_NAME.test(e.name)) {
              assert.equal(e.value, undefined, `${where}/${c.name}: ${e.name} has a literal value`);
              assert.ok(e.valueFrom?.secretKeyRef, `${where}/${c.name}: ${e.name} is not from a Secret`);
            }
          }
        }
      }
    });
  });

  describe(`kustomize build ${OVERLAY}`, function () {
    const kustomize = kustomizePath();
    let rendered: K8sObject[] = [];
    const all = <T extends K8sObject>(kind: string) => rendered.filter((o): o is T => o.kind === kind);
    const one = <T extends K8sObject>(kind: string, name: string): T => {
      const found = rendered.filter((o) => o.kind === kind && o.metadata.name === name);
      assert.equal(found.length, 1, `expected one ${kind}/${name}, found ${found.length}`);
      return found[0] as T;
    };
    const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
      Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
    const workloads = () => [...all<Workload>("Deployment"), ...all<Workload>("StatefulSet")];

    before(async function () {
      if (!existsSync(kustomize)) {
        console.log(`      (skipped: kustomize is not built at ${kustomize}; run test/tools/build-tools.sh, which needs Go)`);
        this.skip();
      }
      const { stdout } = await run(kustomize, ["build", OVERLAY], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
      rendered = parseDocuments(stdout, "kustomize output");
    });

    it("puts every object in the dev namespace, which enforces the restricted Pod Security Standard", () => {
      const namespace = one<K8sObject>("Namespace", NAMESPACE);
      assert.equal(namespace.metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
      for (const o of rendered.filter((o) => o.kind !== "Namespace")) {
        assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind}/${o.metadata.name}`);
      }
      assert.deepEqual(rendered.filter((o) => /^Cluster/.test(o.kind)).map((o) => o.kind), [], "cluster-scoped RBAC");
    });

    it("gives every workload limits, probes and the restricted securityContext", () => {
      assert.deepEqual(
        all<Workload>("Deployment").map((d) => d.metadata.name).sort(),
        [...ALL_SERVICES.map((s) => s.resource), "corral-jaeger"].sort(),
      );
      const problems = workloads().flatMap((w) => podProblems(`${w.kind}/${w.metadata.name}`, w.spec.template.spec));
      assert.deepEqual(problems, []);
      for (const w of workloads()) {
        assert.ok(selects(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name}: selector does not select its pods`);
        for (const c of w.spec.template.spec.containers) {
          assert.ok(c.readinessProbe && c.livenessProbe, `${w.metadata.name}/${c.name}: readiness and liveness probes`);
        }
      }
    });

    for (const service of SERVICES) {
      describe(service.resource, () => {
        const deployment = () => one<Workload>("Deployment", service.resource);
        const container = () => {
          const containers = deployment().spec.template.spec.containers;
          assert.equal(containers.length, 1, "one container");
          return containers[0]!;
        };
        const env = (name: string) => container().env?.find((e) => e.name === name);

        it(`runs ${service.image}, listening on 0.0.0.0:${service.port}`, () => {
          assert.equal(imageName(container().image), service.image);
          // Services with a Prometheus endpoint declare it too, on the port their metrics variable names.
          const metricsVar = service.listenVar.replace(/_LISTEN$/, "_METRICS_LISTEN");
          const metrics = metricsVar in service.config ? env(metricsVar)?.value : undefined;
          const metricsPort = metrics ? Number(/:(\d+)$/.exec(metrics)![1]) : undefined;
          assert.deepEqual(container().ports?.map((p) => p.containerPort), metricsPort ? [service.port, metricsPort] : [service.port]);
          if (metricsPort) {
            assert.equal(container().ports?.find((p) => p.containerPort === metricsPort)?.name, "metrics");
            const annotations = (deployment().spec.template.metadata as { annotations?: Record<string, string> }).annotations;
            assert.deepEqual(annotations, { "prometheus.io/scrape": "true", "prometheus.io/port": String(metricsPort), "prometheus.io/path": "/metrics" });
          }
          assert.equal(env(service.listenVar)?.value, `0.0.0.0:${service.port}`);
        });

        it(`probes grpc.health.v1 on port ${service.port}`, () => {
          const c = container();
          for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter((p) => p !== undefined)) {
            assert.deepEqual(probe.grpc, { port: service.port });
          }
          assert.ok(c.readinessProbe?.grpc && c.livenessProbe?.grpc, "readiness and liveness are gRPC probes");
        });

        it("reads DATABASE_URL from the corral-database Secret's url key, and sets only variables it reads", () => {
          const databaseUrl = env("DATABASE_URL");
          assert.equal(databaseUrl?.value, undefined, "a literal DATABASE_URL");
          const ref = databaseUrl?.valueFrom?.secretKeyRef;
          assert.equal(ref?.key, "url");
          const secret = one<K8sObject & { data?: Record<string, string> }>("Secret", ref!.name);
          assert.match(secret.metadata.name, /^corral-database(-[a-z0-9]+)?$/);
          assert.ok(secret.data?.["url"], "the Secret has no url");
          const known = new Set([...Object.keys(service.config), ...(PENDING_ENV[service.name] ?? []), ...(NODE_FLAGS[service.name] ? ["NODE_OPTIONS"] : [])]);
          for (const e of container().env ?? []) assert.ok(known.has(e.name), `${e.name} is not a ${service.name} setting`);
        });

        it("runs Node with the flags its code names (NODE_OPTIONS), as `corral up` does", () => {
          assert.equal(env("NODE_OPTIONS")?.value, NODE_FLAGS[service.name]?.join(" "));
        });

        it("starts with a configuration that passes its validation", () => {
          const env: Record<string, string> = {};
          for (const e of container().env ?? []) {
            const ref = e.valueFrom?.secretKeyRef;
            const data = ref ? one<K8sObject & { data?: Record<string, string> }>("Secret", ref.name).data?.[ref.key] : undefined;
            env[e.name] = ref ? Buffer.from(data ?? "", "base64").toString("utf8") : e.value ?? "";
          }
          const config = loadConfig(service.config as Parameters<typeof loadConfig>[0], env) as Record<string, unknown>;
          assert.deepEqual(config[service.listenVar], { host: "0.0.0.0", port: service.port });
        });

        it("has its own ServiceAccount, with a token only if it calls the Kubernetes API", () => {
          const pod = deployment().spec.template.spec;
          assert.equal(pod.serviceAccountName, service.resource);
          const account = one<K8sObject & { automountServiceAccountToken?: boolean }>("ServiceAccount", service.resource);
          const wantsToken = service.name === "scheduler";
          assert.equal(pod.automountServiceAccountToken, wantsToken);
          assert.equal(account.automountServiceAccountToken, wantsToken);
          assert.equal(pod.enableServiceLinks, false, "Service links would inject CORRAL_*_PORT variables");
          assert.ok(pod.terminationGracePeriodSeconds! > 5, "the grace period must exceed the 5 s drain");
        });

        it(`has a Service that routes port ${service.port} to it alone`, () => {
          const svc = one<Service>("Service", service.resource);
          const pods = deployment().spec.template.metadata.labels;
          assert.ok(selects(svc.spec.selector, pods), "the Service does not select the Deployment's pods");
          const others = workloads().filter((w) => w.metadata.name !== service.resource && selects(svc.spec.selector, w.spec.template.metadata.labels));
          assert.deepEqual(others.map((w) => w.metadata.name), [], "the Service also selects other workloads");
          assert.equal(svc.spec.ports.length, 1);
          const port = svc.spec.ports[0]!;
          assert.equal(port.port, service.port);
          const target = port.targetPort ?? port.port;
          const containerPort = typeof target === "number" ? target : container().ports?.find((p) => p.name === target)?.containerPort;
          assert.equal(containerPort, service.port, `targetPort ${target} does not reach ${service.port}`);
        });
      });
    }

    describe(WEB.resource, () => {
      const deployment = () => one<Workload>("Deployment", WEB.resource);
      const container = () => {
        const containers = deployment().spec.template.spec.containers;
        assert.equal(containers.length, 1, "one container");
        return containers[0]!;
      };

      it(`runs ${WEB.image}, listening on 0.0.0.0:${WEB.port}, probed over HTTP/1.1 at /healthz`, () => {
        const c = container();
        assert.equal(imageName(c.image), WEB.image);
        assert.deepEqual(c.ports?.map((p) => p.containerPort), [WEB.port]);
        assert.equal(c.env?.find((e) => e.name === WEB.listenVar)?.value, `0.0.0.0:${WEB.port}`);
        for (const probe of [c.readinessProbe, c.livenessProbe]) {
          assert.equal(probe?.httpGet?.path, "/healthz");
          const port = probe!.httpGet!.port;
          assert.equal(typeof port === "number" ? port : c.ports?.find((p) => p.name === port)?.containerPort, WEB.port);
        }
      });

      it("sets only variables it reads, and starts with a configuration that passes its validation; no database", () => {
        const env: Record<string, string> = {};
        for (const e of container().env ?? []) {
          assert.ok(e.name in WEB.config, `${e.name} is not a web setting`);
          const ref = e.valueFrom?.secretKeyRef;
          const data = ref ? one<K8sObject & { data?: Record<string, string> }>("Secret", ref.name).data?.[ref.key] : undefined;
          env[e.name] = ref ? Buffer.from(data ?? "", "base64").toString("utf8") : e.value ?? "";
        }
        assert.equal(env["DATABASE_URL"], undefined);
        const config = loadConfig(webConfig, env) as Record<string, unknown>;
        assert.deepEqual(config[WEB.listenVar], { host: "0.0.0.0", port: WEB.port });
      });

      it("has its own ServiceAccount, without a token", () => {
        const pod = deployment().spec.template.spec;
        assert.equal(pod.serviceAccountName, WEB.resource);
        assert.equal(pod.automountServiceAccountToken, false);
        assert.equal(one<K8sObject & { automountServiceAccountToken?: boolean }>("ServiceAccount", WEB.resource).automountServiceAccountToken, false);
        assert.equal(pod.enableServiceLinks, false);
        assert.ok(pod.terminationGracePeriodSeconds! > 5);
      });

      it(`has a Service that routes port ${WEB.port} to it alone`, () => {
        const svc = one<Service>("Service", WEB.resource);
        assert.ok(selects(svc.spec.selector, deployment().spec.template.metadata.labels));
        const others = workloads().filter((w) => w.metadata.name !== WEB.resource && selects(svc.spec.selector, w.spec.template.metadata.labels));
        assert.deepEqual(others.map((w) => w.metadata.name), []);
        assert.equal(svc.spec.ports.length, 1);
        const target = svc.spec.ports[0]!.targetPort ?? svc.spec.ports[0]!.port;
        assert.equal(svc.spec.ports[0]!.port, WEB.port);
        assert.equal(typeof target === "number" ? target : container().ports?.find((p) => p.name === target)?.containerPort, WEB.port);
      });
    });

    it("points the services at each other through their Services", () => {
      const urls = [
        { deployment: "corral-scheduler", variable: "CORRAL_CONTROL_PLANE_URL", service: "corral-control-plane" },
        { deployment: "corral-control-plane", variable: "CORRAL_ARTIFACT_URL", service: "corral-artifact" },
        { deployment: "corral-scheduler", variable: "CORRAL_ARTIFACT_URL", service: "corral-artifact" },
        { deployment: "corral-web", variable: "CORRAL_SCHEDULER_URL", service: "corral-scheduler" },
        { deployment: "corral-web", variable: "CORRAL_ARTIFACT_URL", service: "corral-artifact" },
      ];
      for (const { deployment, variable, service } of urls) {
        const value = one<Workload>("Deployment", deployment).spec.template.spec.containers[0]!.env?.find((e) => e.name === variable)?.value;
        assert.ok(value, `${deployment}: ${variable} is not set`);
        const url = new URL(value);
        assert.equal(url.hostname, service, `${deployment}: ${variable}`);
        assert.equal(Number(url.port), one<Service>("Service", service).spec.ports[0]!.port, `${deployment}: ${variable} port`);
      }
    });

    it("lets only the scheduler manage Jobs, their Secrets and read their pods, in its namespace", () => {
      const role = one<K8sObject & { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] }>("Role", "corral-scheduler");
      // Exactly what the backend calls, no more: the list its preflight checks.
      const needed = new Set(REQUIRED_ACCESS.map((a) => `${a.verb} ${a.group}/${a.resource}${a.subresource ? `/${a.subresource}` : ""}`));
      const granted = new Set<string>();
      for (const rule of role.rules) {
        for (const group of rule.apiGroups) {
          for (const resource of rule.resources) {
            for (const verb of rule.verbs) granted.add(`${verb} ${group}/${resource}`);
          }
        }
      }
      assert.deepEqual([...granted].sort(), [...needed].sort());
      // Never a right to read a Secret.
      for (const verb of ["get", "list", "watch", "patch", "update"]) assert.ok(!granted.has(`${verb} /secrets`), `grants ${verb} on secrets`);
      const bindings = all<K8sObject & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace?: string }[] }>("RoleBinding");
      assert.deepEqual(
        bindings.map((b) => [b.roleRef.kind, b.roleRef.name, b.subjects.map((s) => [s.kind, s.name, s.namespace ?? NAMESPACE])]),
        [["Role", "corral-scheduler", [["ServiceAccount", "corral-scheduler", NAMESPACE]]]],
      );
    });

    it("references every skaffold artifact where skaffold substitutes it", () => {
      const containerImages = new Set(workloads().flatMap((w) => w.spec.template.spec.containers.map((c) => imageName(c.image))));
      // skaffold rewrites env values only where resourceSelector allows it, ".*" keeping `image` fields.
      const deploymentRule = skaffold.resourceSelector?.allow?.find((a) => a.groupKind === "Deployment.apps");
      const envValues = new Set<string>();
      if (deploymentRule) {
        assert.ok(deploymentRule.image?.includes(".*"), "the Deployment.apps rule drops skaffold's default `image` rewriting");
        if (deploymentRule.image?.includes(".spec.template.spec.containers.*.env.*.value")) {
          for (const d of all<Workload>("Deployment")) for (const c of d.spec.template.spec.containers) for (const e of c.env ?? []) if (e.value) envValues.add(imageName(e.value));
        }
      }
      for (const artifact of skaffold.build.artifacts) {
        assert.ok(containerImages.has(artifact.image) || envValues.has(artifact.image), `${artifact.image} is not in the rendered manifests`);
      }
      const agent = one<Workload>("Deployment", "corral-scheduler").spec.template.spec.containers[0]!.env?.find((e) => e.name === "CORRAL_KUBERNETES_AGENT_IMAGE");
      assert.equal(agent?.value, "corral-agent", "the scheduler's CORRAL_KUBERNETES_AGENT_IMAGE");
      assert.ok(envValues.has("corral-agent"), "skaffold would not substitute CORRAL_KUBERNETES_AGENT_IMAGE");
      // Images skaffold does not build are pinned.
      for (const image of containerImages) {
        if (skaffold.build.artifacts.some((a) => a.image === image)) continue;
        const full = workloads().flatMap((w) => w.spec.template.spec.containers).find((c) => imageName(c.image) === image)!.image;
        assert.match(full, /:(?!latest$)[\w][\w.-]*$|@sha256:/, `${full} is not pinned`);
      }
    });

    it("gives the artifact service its store on a persistent volume at CORRAL_ARTIFACT_DIR, writable by its user, one pod at a time", () => {
      const deployment = one<Workload>("Deployment", "corral-artifact");
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0]!;
      const dir = container.env?.find((e) => e.name === "CORRAL_ARTIFACT_DIR")?.value;
      assert.ok(dir?.startsWith("/"), "CORRAL_ARTIFACT_DIR is an absolute path");
      const mount = container.volumeMounts?.find((m) => m.mountPath === dir);
      assert.ok(mount, `nothing is mounted at ${dir} (the root filesystem is read-only)`);
      const claimName = pod.volumes?.find((v) => v.name === mount.name)?.persistentVolumeClaim?.claimName;
      assert.ok(claimName, `${dir} is not a PersistentVolumeClaim: the artifacts would not outlive the pod`);
      const claim = one<K8sObject & { spec: { accessModes: string[]; resources: { requests: { storage: string } } } }>("PersistentVolumeClaim", claimName);
      assert.ok(quantity(claim.spec.resources.requests.storage) >= 2 ** 30, "the claim asks for some space");
      assert.equal(pod.securityContext?.fsGroup, pod.securityContext?.runAsGroup, "the volume is made writable by the service's group");
      // Two pods must not share one ReadWriteOnce volume, nor start before the old one let go.
      assert.equal(deployment.spec.replicas, 1);
      assert.equal(deployment.spec.strategy?.type, "Recreate");
    });

    it("gives the artifact service, the scheduler and the dashboard the same service token, from a Secret, long enough", () => {
      const refs = ["corral-artifact", "corral-scheduler", "corral-web"].map((name) => {
        const env = one<Workload>("Deployment", name).spec.template.spec.containers[0]!.env?.find((e) => e.name === "CORRAL_ARTIFACT_SERVICE_TOKEN");
        assert.equal(env?.value, undefined, `${name}: a literal token`);
        assert.ok(env?.valueFrom?.secretKeyRef, `${name}: the token is not from a Secret`);
        return env.valueFrom.secretKeyRef;
      });
      assert.deepEqual(refs[0], refs[1]);
      assert.deepEqual(refs[0], refs[2]);
      const secret = one<K8sObject & { data?: Record<string, string> }>("Secret", refs[0]!.name);
      const token = Buffer.from(secret.data?.[refs[0]!.key] ?? "", "base64").toString("utf8");
      assert.ok(token.length >= 32, "the artifact service refuses tokens under 32 characters");
    });

    it("reads tunable settings from the corral-settings ConfigMap, every referenced key present", () => {
      const settings = one<K8sObject & { data: Record<string, string> }>("ConfigMap", "corral-settings");
      const refs = workloads().flatMap((w) =>
        w.spec.template.spec.containers.flatMap((c) =>
          (c.env ?? []).flatMap((e) => {
            const ref = (e as { valueFrom?: { configMapKeyRef?: { name: string; key: string } } }).valueFrom?.configMapKeyRef;
            return ref ? [{ where: `${w.metadata.name}/${e.name}`, ...ref }] : [];
          }),
        ),
      );
      assert.ok(refs.filter((r) => r.key === "log-level").length >= 4, "every service reads its log level from the settings");
      for (const ref of refs) {
        assert.equal(ref.name, "corral-settings", ref.where);
        assert.ok(Object.hasOwn(settings.data, ref.key), `${ref.where}: no key ${ref.key} in corral-settings`);
      }
    });

    it("wires the dev database: one Secret whose url matches the PostgreSQL it configures", () => {
      const secrets = all<K8sObject & { data: Record<string, string> }>("Secret").filter((s) => /^corral-database(-[a-z0-9]+)?$/.test(s.metadata.name));
      assert.equal(secrets.length, 1);
      const decoded = Object.fromEntries(Object.entries(secrets[0]!.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
      const url = new URL(decoded["url"]!);
      assert.match(url.protocol, /^postgres(ql)?:$/);
      const postgres = one<Workload>("StatefulSet", "corral-postgres");
      assert.equal(postgres.spec.replicas, 1);
      const pgService = one<Service>("Service", url.hostname);
      assert.ok(selects(pgService.spec.selector, postgres.spec.template.metadata.labels), `Service ${url.hostname} does not select the PostgreSQL pods`);
      assert.equal(Number(url.port || 5432), pgService.spec.ports[0]!.port);
      const pgEnv = postgres.spec.template.spec.containers[0]!.env ?? [];
      const keys: Record<string, string> = { POSTGRES_USER: "username", POSTGRES_PASSWORD: "password", POSTGRES_DB: "database" };
      const fromSecret = (name: string) => {
        const ref = pgEnv.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
        assert.equal(ref?.name, secrets[0]!.metadata.name, `${name} is not from the database Secret`);
        assert.equal(ref!.key, keys[name], `${name} is from the Secret's ${ref!.key}`);
        return decoded[ref!.key];
      };
      assert.equal(decodeURIComponent(url.username), fromSecret("POSTGRES_USER"));
      assert.equal(decodeURIComponent(url.password), fromSecret("POSTGRES_PASSWORD"));
      assert.equal(url.pathname.slice(1), fromSecret("POSTGRES_DB"));
      assert.match(postgres.spec.template.spec.containers[0]!.image, /^postgres:17[.-]/, "PostgreSQL 17");
    });

    it("forwards skaffold's ports to Services that exist with those ports", () => {
      for (const forward of skaffold.portForward) {
        const svc = one<Service>("Service", forward.resourceName);
        assert.equal(svc.metadata.namespace, forward.namespace);
        assert.ok(svc.spec.ports.some((p) => p.port === forward.port), `${forward.resourceName} has no port ${forward.port}`);
      }
    });
  });
});
