import type { RuntimeHandle } from "@corral/plumbing/db/entities/attempt.ts";
import type { RuntimeFact } from "../finalization/decide-final-status.ts";
import type { RuntimeName } from "../runs/validated-submission.ts";

export type { RuntimeHandle, RuntimeFact };

export interface LaunchRequest {
  runId: string;
  attempt: number;
  /** The attempt's credential; the backend hands it to the agent without env or argv. */
  credential: string;
  controlPlaneUrl: string;
  /** Resource limits from the run spec, where the runtime can apply them. */
  limits: { cpuMillis?: number; memoryBytes?: number; pids?: number; diskBytes?: number };
  /** The run's budget once attached and the grace between a polite and a forced stop. */
  timeouts: { runMs: number; graceMs: number };
  /**
   * W3C trace context of the launch's span, when traced: a backend may hand it to the agent
   * (TRACEPARENT), whose first call to the control plane then joins the run's trace.
   */
  traceContext?: { traceparent: string; tracestate: string };
}

export type FactListener = (runId: string, attempt: number, fact: RuntimeFact, detail: string) => void;

/**
 * Where agents run. Every backend starts the same agent binary, which speaks the same protocol;
 * the backend only starts, observes, stops and cleans up sandboxes.
 */
export interface RuntimeBackend {
  readonly name: RuntimeName;
  /** Whether this backend can launch now; the message says what to fix when it cannot. */
  preflight(signal?: AbortSignal): Promise<{ ok: boolean; message: string }>;
  launch(request: LaunchRequest): Promise<RuntimeHandle>;
  /** The attempt's sandbox as the runtime sees it now (level-based, for reconciliation). */
  observe(runId: string, attempt: number, handle: RuntimeHandle | null): Promise<Observation>;
  /** Stops the sandbox: a polite stop, then a forced one after the grace. */
  terminate(handle: RuntimeHandle, graceMs: number): Promise<void>;
  /** Removes what the attempt left behind, once it is final. */
  cleanup(runId: string, attempt: number, handle: RuntimeHandle | null): Promise<void>;
  /** Facts as they happen (edge-triggered), so finalization need not wait for a sweep. */
  onFact(listener: FactListener): void;
  /**
   * What the sandbox printed, bounded, for an attempt whose agent never attached: the only
   * account of why (a bad image entrypoint, a crash before the first message).
   */
  diagnostics?(runId: string, attempt: number, handle: RuntimeHandle | null): Promise<string | undefined>;
  /** Records a step of stopping and cleaning up where the runtime's own users look (Kubernetes Events). */
  note?(runId: string, attempt: number, step: CleanupStep, message: string): Promise<void>;
  /** Every sandbox the runtime holds, whatever its run's state, so orphans can be found. */
  listSandboxes?(signal?: AbortSignal): Promise<{ runId: string; attempt: number; handle: RuntimeHandle }[]>;
  close(): Promise<void>;
}

export interface Observation {
  fact: RuntimeFact;
  detail: string;
  /** The agent cannot have started (an image that cannot be pulled): no completion will come. */
  neverStarted?: boolean;
}

/** The steps of stopping an attempt's sandbox, in order (ARCHITECTURE.md, "cleanup"). */
export type CleanupStep = "cancel_requested" | "grace_elapsed" | "force_deleted" | "finalized" | "objects_deleted" | "artifacts_kept";
