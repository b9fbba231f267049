import { timestampDate, type Timestamp, type Duration } from "@bufbuild/protobuf/wkt";
import { Phase, StepKind, StepOutcome } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { ArtifactState } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { RunStatus, Runtime, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";

export const STATUS_NAMES: Record<RunStatus, string> = {
  [RunStatus.UNSPECIFIED]: "unknown",
  [RunStatus.QUEUED]: "queued",
  [RunStatus.LAUNCHING]: "launching",
  [RunStatus.RUNNING]: "running",
  [RunStatus.CANCELLING]: "cancelling",
  [RunStatus.COMPLETED]: "completed",
  [RunStatus.FAILED]: "failed",
  [RunStatus.CANCELLED]: "cancelled",
};

export const RUNTIME_NAMES: Record<Runtime, string> = {
  [Runtime.UNSPECIFIED]: "default",
  [Runtime.LOCAL]: "local",
  [Runtime.DOCKER]: "docker",
  [Runtime.KUBERNETES]: "kubernetes",
};

/** The pipeline's phases in the order a run goes through them. */
export const PHASES: { phase: Phase; name: string }[] = [
  { phase: Phase.PREPARING, name: "preparing" },
  { phase: Phase.CLONING, name: "cloning" },
  { phase: Phase.AGENT, name: "agent" },
  { phase: Phase.VALIDATING, name: "validating" },
  { phase: Phase.COMMITTING, name: "committing" },
  { phase: Phase.PUSHING, name: "pushing" },
  { phase: Phase.UPLOADING, name: "uploading" },
  { phase: Phase.FINISHING, name: "finishing" },
];

export const phaseName = (phase: Phase): string => PHASES.find((p) => p.phase === phase)?.name ?? "—";

export const STEP_KINDS: Record<StepKind, string> = {
  [StepKind.UNSPECIFIED]: "step",
  [StepKind.CLONE]: "clone",
  [StepKind.AGENT]: "agent",
  [StepKind.VALIDATION]: "validation",
  [StepKind.COMMIT]: "commit",
  [StepKind.PUSH]: "push",
};

export const STEP_OUTCOMES: Record<StepOutcome, string> = {
  [StepOutcome.UNSPECIFIED]: "unknown",
  [StepOutcome.SUCCEEDED]: "succeeded",
  [StepOutcome.FAILED]: "failed",
  [StepOutcome.TIMED_OUT]: "timed out",
  [StepOutcome.CANCELLED]: "cancelled",
  [StepOutcome.SKIPPED]: "skipped",
};

export const ARTIFACT_STATES: Record<ArtifactState, string> = {
  [ArtifactState.UNSPECIFIED]: "—",
  [ArtifactState.COMPLETE]: "complete",
  [ArtifactState.PARTIAL]: "partial",
  [ArtifactState.FAILED]: "failed",
};

const TERMINAL = new Set<RunStatus>([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);
export const isTerminal = (status: RunStatus): boolean => TERMINAL.has(status);

export const ms = (t: Timestamp | undefined): number | undefined => (t ? timestampDate(t).getTime() : undefined);
export const durationMs = (d: Duration | undefined): number | undefined => (d ? Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6) : undefined);

/** "850 ms", "12.3 s", "4 m 05 s", "2 h 03 m". */
export function formatDuration(milliseconds: number | undefined): string {
  if (milliseconds === undefined || !Number.isFinite(milliseconds)) return "—";
  const m = Math.max(0, milliseconds);
  if (m < 1000) return `${Math.round(m)} ms`;
  if (m < 60_000) return `${(m / 1000).toFixed(1)} s`;
  const s = Math.floor(m / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function formatAge(at: number | undefined, now: number): string {
  if (at === undefined) return "—";
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

export function formatTime(at: number | undefined): string {
  return at === undefined ? "—" : new Date(at).toLocaleString();
}

export function formatBytes(bytes: number | bigint): string {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** How long a run has taken: from submission to its end, or to now while it goes. */
export function runDurationMs(run: Run, now: number): number | undefined {
  const start = ms(run.createdAt);
  if (start === undefined) return undefined;
  return (ms(run.finishedAt) ?? (isTerminal(run.status) ? ms(run.updatedAt) ?? now : now)) - start;
}

export const shortId = (id: string): string => id.slice(0, 8);
