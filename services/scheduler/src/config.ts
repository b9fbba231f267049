import { z } from "zod";
import { byteSize, duration, listenAddress, logLevel, positiveInt, postgresUrl } from "@corral/plumbing/config.ts";
import { metricsListen } from "@corral/plumbing/telemetry/serve-metrics.ts";
import { telemetryConfig } from "@corral/plumbing/telemetry/telemetry-config.ts";

const runtimeName = z.enum(["local", "docker", "kubernetes"]);

/** Environment of the scheduler, validated once at start-up. */
export const schedulerConfig = {
  CORRAL_SCHEDULER_LISTEN: listenAddress("127.0.0.1:8700"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
  /** Prometheus /metrics (HTTP/1.1) as host:port, or "off" (default; `corral up` uses 127.0.0.1:9700). */
  CORRAL_SCHEDULER_METRICS_LISTEN: metricsListen(),
  /** Tracing (OTLP); passed on to agents. */
  ...telemetryConfig,
  /** Where agents attach; handed to every sandbox. */
  CORRAL_CONTROL_PLANE_URL: z.url().default("http://127.0.0.1:8701"),
  /** Runtime of a run that names none. */
  CORRAL_DEFAULT_RUNTIME: runtimeName.default("local"),
  /** Runtimes this scheduler may launch, comma-separated. */
  CORRAL_RUNTIMES: z
    .string()
    .default("local")
    .transform((value, ctx) => {
      const names = value.split(",").map((s) => s.trim()).filter(Boolean);
      const parsed = z.array(runtimeName).min(1).safeParse(names);
      if (!parsed.success) {
        ctx.addIssue({ code: "custom", message: `expected a comma-separated list of local, docker, kubernetes; got "${value}"` });
        return z.NEVER;
      }
      return [...new Set(parsed.data)];
    }),
  /** Runs launching or running at once, over all repositories; 0 pauses dispatch (drain). */
  CORRAL_MAX_CONCURRENT_RUNS: z.coerce.number().int().min(0).default(8),
  /** Runs launching or running at once for one repository URL. */
  CORRAL_MAX_RUNS_PER_REPOSITORY: positiveInt(4),
  /** Work directories of local-runtime agents. */
  CORRAL_WORK_ROOT: z.string().default(".corral/work"),
  /** How the local runtime starts the agent; empty means this checkout's agent on this Node. */
  CORRAL_AGENT_COMMAND: z.string().optional(),
  /**
   * Standby agents the local runtime keeps started (modules loaded, waiting for a run), so that
   * a launch skips the agent's start-up; 0 disables the pool and every launch starts an agent.
   */
  CORRAL_LOCAL_WARM_AGENTS: z.coerce.number().int().min(0).max(64).default(2),
  /** How long finalization waits for a completion once the agent's process has ended. */
  CORRAL_COMPLETION_WAIT: duration("10s"),
  /** How often the reconciler looks at every unfinished run, besides reacting to events. */
  CORRAL_RECONCILE_INTERVAL: duration("5s"),
  /** Defaults of run specs. */
  CORRAL_DEFAULT_RUN_TIMEOUT: duration("1h"),
  CORRAL_DEFAULT_STEP_TIMEOUT: duration("30m"),
  CORRAL_DEFAULT_CLONE_TIMEOUT: duration("5m"),
  CORRAL_DEFAULT_GRACE: duration("10s"),
  CORRAL_COMMIT_AUTHOR_NAME: z.string().default("Corral"),
  CORRAL_COMMIT_AUTHOR_EMAIL: z.email().default("corral@localhost"),

  // The kubernetes runtime; read only when CORRAL_RUNTIMES names it.
  /** A kubeconfig file; unset: in-cluster credentials inside a pod, else $KUBECONFIG or ~/.kube/config. */
  CORRAL_KUBECONFIG: z.string().optional(),
  /** A context of the kubeconfig other than its current one. */
  CORRAL_KUBERNETES_CONTEXT: z.string().optional(),
  /** Where agent Jobs run. */
  CORRAL_KUBERNETES_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "expected a namespace name (DNS-1123 label)").default("corral-runs"),
  /** The runner agent's image (deploy/docker/agent.Dockerfile). */
  CORRAL_KUBERNETES_AGENT_IMAGE: z.string().min(1).default("corral-agent:latest"),
  CORRAL_KUBERNETES_IMAGE_PULL_POLICY: z.enum(["Always", "IfNotPresent", "Never"]).optional(),
  /** Comma-separated names of image pull Secrets in the namespace. */
  CORRAL_KUBERNETES_IMAGE_PULL_SECRETS: z
    .string()
    .default("")
    .transform((value) => value.split(",").map((s) => s.trim()).filter(Boolean)),
  /** Service account of agent pods; its token is never mounted. */
  CORRAL_KUBERNETES_SERVICE_ACCOUNT: z.string().optional(),
  /** A YAML PodTemplate (or PodTemplateSpec) agent pods start from: node selector, tolerations, sidecars. */
  CORRAL_KUBERNETES_POD_TEMPLATE: z.string().optional(),
  /** How long a finished Job stays for inspection before Kubernetes deletes it (with its Secret). */
  CORRAL_KUBERNETES_JOB_TTL: duration("1h"),
  /** The control plane as agent pods reach it; unset: CORRAL_CONTROL_PLANE_URL. */
  CORRAL_KUBERNETES_CONTROL_PLANE_URL: z.url().optional(),
  /** Resources of a run whose spec sets none. */
  CORRAL_KUBERNETES_DEFAULT_CPU_MILLIS: positiveInt(1000),
  CORRAL_KUBERNETES_DEFAULT_MEMORY: byteSize("2GiB"),
  CORRAL_KUBERNETES_DEFAULT_DISK: byteSize("10GiB"),

  // The docker runtime; read only when CORRAL_RUNTIMES names it.
  /** The Docker Engine API (Docker, or podman's compatible service): unix:///path, tcp://host:port, https://host:port; unset: DOCKER_HOST, else unix:///var/run/docker.sock. */
  CORRAL_DOCKER_HOST: z.string().min(1).optional(),
  /** ca.pem, cert.pem and key.pem for an https:// engine; unset: DOCKER_CERT_PATH. */
  CORRAL_DOCKER_CERT_PATH: z.string().optional(),
  /**
   * This installation's name on the engine: its containers carry it as a label, and only they
   * are its orphans. Installations sharing one engine need different scopes.
   */
  CORRAL_DOCKER_SCOPE: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "expected letters, digits, '_', '.', '-'").default("default"),
  /** The runner agent's image, present on the engine (deploy/docker/build-agent-image.sh builds it without a registry). */
  CORRAL_DOCKER_AGENT_IMAGE: z.string().min(1).default("corral-agent:latest"),
  /** The network of agent containers: bridge, host, or a user-defined network. */
  CORRAL_DOCKER_NETWORK: z.string().min(1).default("bridge"),
  /** The control plane as agent containers reach it; unset: CORRAL_CONTROL_PLANE_URL. */
  CORRAL_DOCKER_CONTROL_PLANE_URL: z.url().optional(),
  /** uid:gid of the agent in its container (the image's non-root user). */
  CORRAL_DOCKER_USER: z.string().regex(/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$/, "expected uid[:gid] or user[:group]").default("10001:10001"),
  /** Resources of a run whose spec sets none. */
  CORRAL_DOCKER_DEFAULT_CPU_MILLIS: positiveInt(1000),
  CORRAL_DOCKER_DEFAULT_MEMORY: byteSize("2GiB"),
  CORRAL_DOCKER_DEFAULT_PIDS: positiveInt(1024),
  /** Size of the work dir (a tmpfs, so it counts against the memory limit) when the run spec sets no disk limit. */
  CORRAL_DOCKER_WORK_DIR_SIZE: byteSize("1GiB"),
  /** Size of the tmpfs at /tmp (the agent's HOME and TMPDIR). */
  CORRAL_DOCKER_TMP_SIZE: byteSize("256MiB"),
  /** Host directories bind-mounted into agent containers, SOURCE:TARGET[:ro|rw], comma-separated (file:// repositories, caches). */
  CORRAL_DOCKER_MOUNTS: z.string().default(""),
};

export type SchedulerConfig = Readonly<z.infer<z.ZodObject<typeof schedulerConfig>>>;
