import { parseArgs } from "node:util";
import { z } from "zod";
import { ConfigError, loadConfig, postgresUrl } from "@corral/plumbing/config.ts";
import { startStack } from "../stack/start-stack.ts";

const upConfig = {
  /** Where `corral up` keeps its embedded database and logs. */
  CORRAL_HOME: z.string().default(".corral"),
  DATABASE_URL: postgresUrl.optional(),
};

const LABELS: Record<string, string> = {
  scheduler: "scheduler     ",
  "control-plane": "control plane ",
  artifact: "artifact      ",
  web: "dashboard     ",
};

/** `corral up`: the all-in-one dev stack in the foreground. Returns the exit code. */
export async function up(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        help: { type: "boolean", short: "h" },
        runtime: { type: "string" },
        kubeconfig: { type: "string" },
        namespace: { type: "string" },
        "agent-image": { type: "string" },
        "docker-host": { type: "string" },
        network: { type: "string" },
      },
    }));
  } catch (error) {
    process.stderr.write(`corral up: ${(error as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(
      "usage: corral up [--runtime local|docker|kubernetes] [--agent-image IMAGE] [--docker-host URL] [--network NET]\n" +
        "                 [--kubeconfig FILE] [--namespace NS]\n\n" +
        "--runtime docker launches each run's agent in a container through the Docker Engine API at\n" +
        "--docker-host (default: $DOCKER_HOST, else unix:///var/run/docker.sock; podman's API service works\n" +
        "too), from --agent-image (default corral-agent:latest; deploy/docker/build-agent-image.sh builds it\n" +
        "without a registry), in --network (default host here, so agents reach this stack on 127.0.0.1).\n\n" +
        "--runtime kubernetes launches runs as Jobs on the cluster of --kubeconfig (default: $KUBECONFIG or\n" +
        "~/.kube/config) in --namespace (default corral-runs), with the agent image --agent-image; agent pods\n" +
        "must reach the control plane (CORRAL_KUBERNETES_CONTROL_PLANE_URL, default its local address).\n\n" +
        "Starts the all-in-one stack. Environment: CORRAL_HOME (default .corral), DATABASE_URL\n" +
        "(default: an embedded PostgreSQL), CORRAL_SCHEDULER_LISTEN, CORRAL_CONTROL_PLANE_LISTEN,\nCORRAL_ARTIFACT_LISTEN, CORRAL_WEB_LISTEN (the dashboard), CORRAL_LOG_LEVEL, CORRAL_ARTIFACT_SERVICE_TOKEN\n(default: one kept in CORRAL_HOME/artifact-service-token, made on first start),\nCORRAL_*_METRICS_LISTEN (default: each service's port + 1000, \"off\" for none), OTEL_EXPORTER_OTLP_ENDPOINT\n(traces, e.g. http://127.0.0.1:4318 for Jaeger; off when unset).\n",
    );
    return 0;
  }
  // The flags are shorthands for the scheduler's variables, which the services read.
  const flagEnv: Record<string, string> = {};
  if (values.runtime !== undefined) {
    if (!["local", "docker", "kubernetes"].includes(values.runtime)) {
      process.stderr.write(`corral up: --runtime: expected local, docker or kubernetes, got "${values.runtime}"\n`);
      return 2;
    }
    flagEnv.CORRAL_RUNTIMES = values.runtime;
    flagEnv.CORRAL_DEFAULT_RUNTIME = values.runtime;
  }
  if (values.kubeconfig !== undefined) flagEnv.CORRAL_KUBECONFIG = values.kubeconfig;
  if (values.namespace !== undefined) flagEnv.CORRAL_KUBERNETES_NAMESPACE = values.namespace;
  if (values["agent-image"] !== undefined) {
    if (values.runtime !== "docker") flagEnv.CORRAL_KUBERNETES_AGENT_IMAGE = values["agent-image"];
    if (values.runtime !== "kubernetes") flagEnv.CORRAL_DOCKER_AGENT_IMAGE = values["agent-image"];
  }
  if (values["docker-host"] !== undefined) flagEnv.CORRAL_DOCKER_HOST = values["docker-host"];
  if (values.network !== undefined) flagEnv.CORRAL_DOCKER_NETWORK = values.network;
  // The stack listens on loopback, which only the host's network reaches from a container.
  else if (values.runtime === "docker" && !process.env.CORRAL_DOCKER_NETWORK) flagEnv.CORRAL_DOCKER_NETWORK = "host";
  let config;
  try {
    config = loadConfig(upConfig);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`corral up: ${error.message}\n`);
      return 2;
    }
    throw error;
  }

  const say = (line: string) => process.stdout.write(`${line}\n`);
  // Listen before anything starts: a Ctrl-C during start-up must still stop what was started.
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  let stack;
  try {
    stack = await startStack({
      home: config.CORRAL_HOME,
      databaseUrl: config.DATABASE_URL,
      env: { ...process.env, ...flagEnv },
      progress: (line) => say(`… ${line}`),
    });
  } catch (error) {
    process.stderr.write(`corral up: ${(error as Error).message}\n`);
    return 1;
  }

  say("");
  say("Corral is up.");
  for (const name of ["scheduler", "control-plane", "artifact", "web"]) {
    const service = stack.services.find((s) => s.name === name)!;
    say(`  ${LABELS[name]} ${service.url}`);
  }
  const scraped = stack.services.filter((s) => s.metricsUrl);
  if (scraped.length > 0) say(`  metrics        ${scraped.map((s) => `${s.name} ${s.metricsUrl}`).join(", ")}`);
  say(`  tracing        ${process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? `OTLP to ${process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_ENDPOINT}` : "off (set OTEL_EXPORTER_OTLP_ENDPOINT)"}`);
  say(`  postgres       ${stack.embedded ? `embedded, data in ${config.CORRAL_HOME}/pg` : "DATABASE_URL"}`);
  say(`  logs           ${config.CORRAL_HOME}/logs/`);
  if (stack.serviceTokenFile) say(`  service token  ${stack.serviceTokenFile} (corral logs and corral artifacts read it)`);
  say("Press Ctrl-C to stop.");

  const outcome = await Promise.race([
    stopRequested.then((signal) => ({ signal, failed: undefined })),
    stack.failed.then((service) => ({ failed: `${service.name} exited unexpectedly; see ${service.logFile}` })),
  ]);
  say(outcome.failed ? `\n${outcome.failed}; stopping` : "\nstopping…");
  await stack.stop();
  say("stopped.");
  return outcome.failed ? 1 : 0;
}
