import { readFileSync } from "node:fs";
import { KubeConfig, type V1PodTemplateSpec } from "@kubernetes/client-node";
import { parse } from "yaml";
import { ConfigError } from "@corral/plumbing/config.ts";
import type { SchedulerConfig } from "../../config.ts";
import type { KubernetesRuntimeOptions } from "./kubernetes-runtime.ts";

/** The kubernetes runtime's options, compiled once from the scheduler's configuration. */
export function kubernetesSettings(config: SchedulerConfig, agentEnv: Record<string, string>): Omit<KubernetesRuntimeOptions, "logger"> {
  return {
    loadKubeConfig: () => loadKubeConfig(config),
    controlPlaneUrl: config.CORRAL_KUBERNETES_CONTROL_PLANE_URL ?? config.CORRAL_CONTROL_PLANE_URL,
    shape: {
      namespace: config.CORRAL_KUBERNETES_NAMESPACE,
      image: config.CORRAL_KUBERNETES_AGENT_IMAGE,
      imagePullPolicy: config.CORRAL_KUBERNETES_IMAGE_PULL_POLICY,
      imagePullSecrets: config.CORRAL_KUBERNETES_IMAGE_PULL_SECRETS,
      serviceAccountName: config.CORRAL_KUBERNETES_SERVICE_ACCOUNT,
      ttlSecondsAfterFinished: Math.ceil(config.CORRAL_KUBERNETES_JOB_TTL / 1000),
      defaults: {
        cpuMillis: config.CORRAL_KUBERNETES_DEFAULT_CPU_MILLIS,
        memoryBytes: config.CORRAL_KUBERNETES_DEFAULT_MEMORY,
        diskBytes: config.CORRAL_KUBERNETES_DEFAULT_DISK,
      },
      podTemplate: config.CORRAL_KUBERNETES_POD_TEMPLATE ? readPodTemplate(config.CORRAL_KUBERNETES_POD_TEMPLATE) : undefined,
      agentEnv,
    },
  };
}

function loadKubeConfig(config: SchedulerConfig): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (config.CORRAL_KUBECONFIG) {
    try {
      kubeConfig.loadFromFile(config.CORRAL_KUBECONFIG);
    } catch (error) {
      throw new Error(`cannot load the kubeconfig ${config.CORRAL_KUBECONFIG} (CORRAL_KUBECONFIG): ${(error as Error).message}`);
    }
  }
  // In a pod, the scheduler uses its service account (the deploy/ Role).
  else if (process.env.KUBERNETES_SERVICE_HOST) kubeConfig.loadFromCluster();
  else kubeConfig.loadFromDefault();
  if (config.CORRAL_KUBERNETES_CONTEXT) kubeConfig.setCurrentContext(config.CORRAL_KUBERNETES_CONTEXT);
  if (!kubeConfig.getCurrentCluster()) {
    throw new Error(`no cluster in the kubeconfig${config.CORRAL_KUBECONFIG ? ` ${config.CORRAL_KUBECONFIG}` : ""} (set CORRAL_KUBECONFIG)`);
  }
  return kubeConfig;
}

function readPodTemplate(path: string): V1PodTemplateSpec {
  const fail = (message: string): never => {
    throw new ConfigError([{ variable: "CORRAL_KUBERNETES_POD_TEMPLATE", message }]);
  };
  let document: unknown;
  try {
    document = parse(readFileSync(path, "utf8"));
  } catch (error) {
    return fail(`cannot read ${path}: ${(error as Error).message}`);
  }
  const object = document as { kind?: string; template?: V1PodTemplateSpec; spec?: unknown } | null;
  // A PodTemplate object carries the spec under "template"; a bare PodTemplateSpec is accepted too.
  const template = object?.kind === "PodTemplate" ? object.template : (object as V1PodTemplateSpec | null);
  if (!template || typeof template !== "object" || (template.spec !== undefined && typeof template.spec !== "object")) {
    return fail(`${path} is not a PodTemplate or PodTemplateSpec`);
  }
  return template;
}
