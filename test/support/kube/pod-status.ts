import type { V1Pod } from "@kubernetes/client-node";

/**
 * The pods/status bodies a kubelet sends, as JSON merge patches. Lists are replaced whole by a merge
 * patch, so each body carries every condition and every container status.
 */

/** RFC 3339 to the second, as Kubernetes writes times. */
export function kubeNow(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

type ContainerState = Record<string, unknown>;

/** The first container waits (image pull, config error, volumes); the pod stays Pending. */
export function waitingStatus(pod: V1Pod, reason: string, message: string): object {
  return {
    status: {
      phase: "Pending",
      ...hostFields(),
      conditions: conditions(pod, false, "ContainersNotReady", `containers with unready status: [${containerNames(pod).join(" ")}]`),
      containerStatuses: containerStatuses(pod, { waiting: { reason, message } }, false),
    },
  };
}

export function runningStatus(pod: V1Pod, startedAt: string, containerId: string): object {
  return {
    status: {
      phase: "Running",
      ...hostFields(),
      startTime: startedAt,
      conditions: conditions(pod, true),
      containerStatuses: containerStatuses(pod, { running: { startedAt } }, true, containerId),
    },
  };
}

export interface Termination {
  exitCode: number;
  reason: string;
  message?: string;
  startedAt: string;
  finishedAt: string;
}

/** The container ended: Succeeded on exit code 0, else Failed (restartPolicy Never is all the fake node does). */
export function terminatedStatus(pod: V1Pod, end: Termination, containerId: string, podReason?: { reason: string; message: string }): object {
  const { exitCode, reason, message, startedAt, finishedAt } = end;
  return {
    status: {
      phase: exitCode === 0 && !podReason ? "Succeeded" : "Failed",
      ...(podReason ?? {}),
      ...hostFields(),
      startTime: startedAt,
      conditions: conditions(pod, false, "PodCompleted", ""),
      containerStatuses: containerStatuses(pod, { terminated: { exitCode, reason, ...(message ? { message } : {}), startedAt, finishedAt, containerID: containerId } }, false, containerId),
    },
  };
}

function hostFields() {
  return { hostIP: "127.0.0.1", hostIPs: [{ ip: "127.0.0.1" }], podIP: "127.0.0.1", podIPs: [{ ip: "127.0.0.1" }] };
}

function conditions(pod: V1Pod, ready: boolean, reason?: string, message?: string) {
  const now = kubeNow();
  const notReady = ready ? {} : { reason, message };
  return [
    { type: "PodReadyToStartContainers", status: "True", lastTransitionTime: now },
    { type: "Initialized", status: "True", lastTransitionTime: now },
    { type: "Ready", status: ready ? "True" : "False", lastTransitionTime: now, ...notReady },
    { type: "ContainersReady", status: ready ? "True" : "False", lastTransitionTime: now, ...notReady },
    { type: "PodScheduled", status: "True", lastTransitionTime: scheduledAt(pod) ?? now },
  ];
}

/** Only the first container runs; any others are reported as waiting, so nobody mistakes them for running. */
function containerStatuses(pod: V1Pod, state: ContainerState, ready: boolean, containerId?: string) {
  return pod.spec!.containers.map((container, index) => ({
    name: container.name,
    image: container.image ?? "",
    imageID: index === 0 && containerId ? `fake://${container.image}` : "",
    ...(index === 0 && containerId ? { containerID: containerId } : {}),
    ready: index === 0 && ready,
    started: index === 0 && "running" in state,
    restartCount: 0,
    state: index === 0 ? state : { waiting: { reason: "NotSupportedByFakeNode", message: "the fake node runs only a pod's first container" } },
  }));
}

function containerNames(pod: V1Pod): string[] {
  return pod.spec!.containers.map((c) => c.name);
}

function scheduledAt(pod: V1Pod): string | undefined {
  const time = pod.status?.conditions?.find((c) => c.type === "PodScheduled")?.lastTransitionTime as unknown;
  if (time instanceof Date) return time.toISOString().replace(/\.\d+Z$/, "Z");
  return typeof time === "string" ? time : undefined;
}
