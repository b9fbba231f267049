import type { V1Job, V1Pod } from "@kubernetes/client-node";
import type { RuntimeFact } from "../runtime-backend.ts";

/**
 * Waiting reasons after which the agent container will not start without someone changing
 * something (the image, a Secret, the spec): the attempt fails now with the reason, instead of
 * at the attach timeout or the Job's deadline.
 */
const HOPELESS_WAITING = new Set(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError"]);

export interface SandboxFact {
  fact: RuntimeFact;
  detail: string;
  /** The agent's container never ran, so it cannot have attached: no completion will come. */
  neverStarted?: boolean;
}

/**
 * What the runtime knows of an attempt from its Job and pods, as read from the informers'
 * caches. Level-based: the same objects always give the same fact.
 */
export function sandboxFact(job: V1Job | undefined, pods: readonly V1Pod[]): SandboxFact {
  if (!job) return { fact: "missing", detail: "the attempt's Job does not exist (deleted, or never created)" };
  const condition = (type: string) => job.status?.conditions?.find((c) => c.type === type && c.status === "True");
  const complete = condition("Complete");
  if (complete) return { fact: "succeeded", detail: "" };
  const failed = condition("Failed");
  if (failed) return { fact: "failed", detail: `Job failed: ${failed.reason ?? "unknown reason"}${failed.message ? ` (${failed.message})` : ""}${terminatedDetail(pods)}` };
  for (const pod of pods) {
    for (const status of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
      const waiting = status.state?.waiting;
      if (waiting?.reason && HOPELESS_WAITING.has(waiting.reason)) {
        return {
          fact: "failed",
          detail: `container ${status.name} cannot start: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""}`,
          neverStarted: !status.state?.running && !status.lastState?.terminated,
        };
      }
    }
    const unschedulable = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable");
    if (unschedulable) return { fact: "running", detail: `pod ${pod.metadata?.name} is unschedulable: ${unschedulable.message ?? ""}` };
  }
  return { fact: "running", detail: "" };
}

function terminatedDetail(pods: readonly V1Pod[]): string {
  for (const pod of pods) {
    const terminated = pod.status?.containerStatuses?.find((s) => s.state?.terminated)?.state?.terminated;
    if (terminated) return `; the agent container exited with code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ""}`;
  }
  return "";
}
