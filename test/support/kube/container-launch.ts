import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import type { V1ConfigMap, V1Container, V1KeyToPath, V1Pod, V1Secret } from "@kubernetes/client-node";

/** How the fake node reads the objects a pod refers to; undefined when the object does not exist. */
export interface PodObjectReader {
  secret(namespace: string, name: string): Promise<V1Secret | undefined>;
  configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
}

/** What to run for a pod's first container: a local process in place of the container. */
export interface ContainerLaunch {
  container: V1Container;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

/**
 * Why the container cannot start (yet), as the kubelet reports it in
 * containerStatuses[].state.waiting. retry: the cause may go away (an object created later).
 */
export class ContainerWaiting extends Error {
  reason: string;
  retry: boolean;
  constructor(reason: string, message: string, retry: boolean) {
    super(message);
    this.reason = reason;
    this.retry = retry;
  }
}

// A real container sees only its image's environment; a local process also needs a PATH.
const HOST_ENV = ["PATH", "LANG", "TZ"];

/**
 * Prepares the pod's first container under podDir: the image's argv (from images) or the
 * container's command, its env with references resolved, and its volumes materialised as
 * directories, with every mountPath in env values, argv and workingDir rewritten to the host dir.
 */
export async function prepareContainerLaunch(
  pod: V1Pod,
  podDir: string,
  images: Record<string, string[]>,
  reader: PodObjectReader,
): Promise<ContainerLaunch> {
  const container = pod.spec!.containers[0]!;
  const image = container.image ?? "";
  const imageArgv = Object.hasOwn(images, image) ? images[image] : undefined;
  if (!imageArgv) {
    throw new ContainerWaiting("ErrImagePull", `Failed to pull image "${image}": the fake node has no image "${image}" (it has: ${Object.keys(images).join(", ") || "none"})`, false);
  }

  const volumeDirs = await materialiseVolumes(pod, join(podDir, "volumes"), reader);
  const mounts = (container.volumeMounts ?? []).map((mount) => {
    const volumeDir = volumeDirs.get(mount.name);
    if (volumeDir === undefined) {
      throw new ContainerWaiting("CreateContainerConfigError", `volumeMount "${mount.name}" refers to no volume of the pod`, false);
    }
    return { path: mount.mountPath.replace(/\/+$/, ""), hostPath: mount.subPath ? join(volumeDir, mount.subPath) : volumeDir };
  });
  // The longest mountPath first, so that a mount inside another mount wins.
  mounts.sort((a, b) => b.path.length - a.path.length);
  const toHost = (value: string) => {
    for (const mount of mounts) {
      if (value === mount.path || value.startsWith(`${mount.path}/`)) return mount.hostPath + value.slice(mount.path.length);
    }
    return value;
  };

  const env: Record<string, string> = {};
  for (const name of HOST_ENV) if (process.env[name] !== undefined) env[name] = process.env[name]!;
  env.HOSTNAME = pod.metadata!.name!;
  env.HOME = join(podDir, "home");
  await mkdir(env.HOME, { recursive: true });
  // Only the pod's own values name paths inside the container; the host's (PATH) are host paths
  // already, and rewriting them would break a checkout under a mountPath such as /tmp.
  for (const [name, value] of Object.entries(await resolveEnv(pod, container, reader))) env[name] = toHost(value);

  // The image's own files are not there; an unmounted workingDir becomes a dir under the pod's "root".
  const root = join(podDir, "root");
  const workingDir = container.workingDir ? toHost(container.workingDir) : root;
  const cwd = workingDir === container.workingDir ? join(root, workingDir) : workingDir;
  await mkdir(cwd, { recursive: true });

  // The image's argv stands for files of the image, which are the host's here: never rewritten.
  // A command or args from the pod spec are the container's view, so they are.
  const fromSpec = (args: string[]) => args.map((arg) => toHost(expand(arg, env)));
  const argv = [...(container.command ? fromSpec(container.command) : imageArgv), ...fromSpec(container.args ?? [])];
  return { container, argv, env, cwd };
}

async function materialiseVolumes(pod: V1Pod, dir: string, reader: PodObjectReader): Promise<Map<string, string>> {
  const namespace = pod.metadata!.namespace!;
  const dirs = new Map<string, string>();
  for (const volume of pod.spec!.volumes ?? []) {
    const volumeDir = join(dir, volume.name);
    await mkdir(volumeDir, { recursive: true, mode: 0o755 });
    dirs.set(volume.name, volumeDir);
    const mountFailed = (message: string) =>
      new ContainerWaiting("ContainerCreating", `MountVolume.SetUp failed for volume "${volume.name}" : ${message}`, true);
    if (volume.secret) {
      const name = volume.secret.secretName ?? "";
      const secret = await reader.secret(namespace, name);
      if (!secret) {
        if (volume.secret.optional) continue;
        throw mountFailed(`secret "${name}" not found`);
      }
      await writeKeys(volumeDir, decodeData(secret.data), volume.secret.items, volume.secret.defaultMode, volume.secret.optional, (key) => mountFailed(`references non-existent secret key: ${key}`));
    } else if (volume.configMap) {
      const name = volume.configMap.name ?? "";
      const configMap = await reader.configMap(namespace, name);
      if (!configMap) {
        if (volume.configMap.optional) continue;
        throw mountFailed(`configmap "${name}" not found`);
      }
      await writeKeys(volumeDir, configMapData(configMap), volume.configMap.items, volume.configMap.defaultMode, volume.configMap.optional, (key) => mountFailed(`configmap references non-existent config key: ${key}`));
    } else if (volume.projected) {
      // Best effort (the kubelet's service-account token volume, for one): the secrets and config
      // maps that exist; no tokens, no downward API.
      for (const source of volume.projected.sources ?? []) {
        const secret = source.secret && (await reader.secret(namespace, source.secret.name ?? ""));
        if (secret) await writeKeys(volumeDir, decodeData(secret.data), source.secret!.items, volume.projected.defaultMode, true, () => undefined);
        const configMap = source.configMap && (await reader.configMap(namespace, source.configMap.name ?? ""));
        if (configMap) await writeKeys(volumeDir, configMapData(configMap), source.configMap!.items, volume.projected.defaultMode, true, () => undefined);
      }
    }
    // emptyDir, and any other kind of volume: an empty directory.
  }
  return dirs;
}

/**
 * Writes each key (or each listed item) as a file, with the item's mode, else the volume's
 * defaultMode, as the kubelet does. The apiserver defaults defaultMode to 0644 for secret and
 * configMap volumes, so a pod that wants a private credential file must say so.
 */
async function writeKeys(
  dir: string,
  data: Map<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number | undefined,
  optional: boolean | undefined,
  missingKey: (key: string) => Error | undefined,
): Promise<void> {
  const files = items ?? [...data.keys()].map((key) => ({ key, path: key, mode: undefined }));
  for (const item of files) {
    const content = data.get(item.key);
    if (content === undefined) {
      const error = optional ? undefined : missingKey(item.key);
      if (error) throw error;
      continue;
    }
    const file = resolve(dir, item.path);
    if (!file.startsWith(dir + sep)) throw new ContainerWaiting("ContainerCreating", `item path "${item.path}" leaves the volume`, false);
    await mkdir(dirname(file), { recursive: true });
    const mode = item.mode ?? defaultMode ?? 0o644;
    await writeFile(file, content, { mode });
    await chmod(file, mode); // writeFile's mode is masked by the umask
  }
}

async function resolveEnv(pod: V1Pod, container: V1Container, reader: PodObjectReader): Promise<Record<string, string>> {
  const namespace = pod.metadata!.namespace!;
  const env: Record<string, string> = {};
  const configError = (message: string) => new ContainerWaiting("CreateContainerConfigError", message, true);
  for (const source of container.envFrom ?? []) {
    const prefix = source.prefix ?? "";
    if (source.secretRef) {
      const secret = await reader.secret(namespace, source.secretRef.name ?? "");
      if (!secret && !source.secretRef.optional) throw configError(`secret "${source.secretRef.name}" not found`);
      for (const [key, value] of decodeData(secret?.data)) env[prefix + key] = value.toString("utf8");
    }
    if (source.configMapRef) {
      const configMap = await reader.configMap(namespace, source.configMapRef.name ?? "");
      if (!configMap && !source.configMapRef.optional) throw configError(`configmap "${source.configMapRef.name}" not found`);
      for (const [key, value] of configMap ? configMapData(configMap) : []) env[prefix + key] = value.toString("utf8");
    }
  }
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (!from) {
      env[variable.name] = expand(variable.value ?? "", env);
    } else if (from.secretKeyRef) {
      const { name = "", key, optional } = from.secretKeyRef;
      const secret = await reader.secret(namespace, name);
      const value = decodeData(secret?.data).get(key);
      if (value !== undefined) env[variable.name] = value.toString("utf8");
      else if (!optional) throw configError(secret ? `couldn't find key ${key} in Secret ${namespace}/${name}` : `secret "${name}" not found`);
    } else if (from.configMapKeyRef) {
      const { name = "", key, optional } = from.configMapKeyRef;
      const configMap = await reader.configMap(namespace, name);
      const value = configMap && configMapData(configMap).get(key);
      if (value !== undefined) env[variable.name] = value.toString("utf8");
      else if (!optional) throw configError(configMap ? `couldn't find key ${key} in ConfigMap ${namespace}/${name}` : `configmap "${name}" not found`);
    } else if (from.fieldRef) {
      env[variable.name] = fieldValue(pod, from.fieldRef.fieldPath);
    } else {
      throw new ContainerWaiting("CreateContainerConfigError", `env ${variable.name}: the fake node supports value, secretKeyRef, configMapKeyRef and fieldRef only`, false);
    }
  }
  return env;
}

function fieldValue(pod: V1Pod, path: string): string {
  const meta = pod.metadata!;
  const label = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (label) return (label[1] === "labels" ? meta.labels : meta.annotations)?.[label[2]!] ?? "";
  const fields: Record<string, string | undefined> = {
    "metadata.name": meta.name,
    "metadata.namespace": meta.namespace,
    "metadata.uid": meta.uid,
    "spec.nodeName": pod.spec?.nodeName,
    "spec.serviceAccountName": pod.spec?.serviceAccountName,
    "status.hostIP": "127.0.0.1",
    "status.podIP": "127.0.0.1",
  };
  if (!Object.hasOwn(fields, path)) throw new ContainerWaiting("CreateContainerConfigError", `fieldRef ${path} is not supported by the fake node`, false);
  return fields[path] ?? "";
}

/** Kubernetes' $(VAR) expansion against the variables defined so far; $$ escapes a $. Unknown references stay as they are. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) =>
    name === undefined ? "$" : Object.hasOwn(env, name) ? env[name]! : whole);
}

function decodeData(data: Record<string, string> | undefined): Map<string, Buffer> {
  return new Map(Object.entries(data ?? {}).map(([key, value]) => [key, Buffer.from(value, "base64")]));
}

function configMapData(configMap: V1ConfigMap): Map<string, Buffer> {
  return new Map([
    ...Object.entries(configMap.data ?? {}).map(([key, value]) => [key, Buffer.from(value, "utf8")] as const),
    ...decodeData(configMap.binaryData),
  ]);
}
