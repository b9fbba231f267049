/** Where a run's agent runs, by name; the proto's Runtime enum minus "unspecified". */
export type RuntimeName = "local" | "docker" | "kubernetes";

/** Time budgets in milliseconds, every one resolved. */
export interface ResolvedTimeouts {
  runMs: number;
  stepMs: number;
  cloneMs: number;
  graceMs: number;
}

/** What the scheduler fills in when a submission leaves something unset. Read from config. */
export interface SchedulerDefaults {
  readonly runtime: RuntimeName;
  readonly enabledRuntimes: readonly RuntimeName[];
  readonly timeouts: Readonly<ResolvedTimeouts>;
  readonly commitAuthor: { readonly name: string; readonly email: string };
}

/**
 * Sandbox limits. An absent field takes the runtime's own default, because only the runtime
 * knows what it can give (the proto's "0 takes the runtime's default").
 */
export interface ResolvedLimits {
  cpuMillis?: number;
  memoryBytes?: number;
  pids?: number;
  diskBytes?: number;
}

export interface ResolvedValidationStep {
  name: string;
  command: string;
  timeoutMs: number;
}

/**
 * A RunSpec with every default resolved. Plain JSON-safe data (numbers, not bigints or
 * Durations), so it can be stored as is and sent to the agent in its assignment.
 */
export interface ResolvedRunSpec {
  repositoryUrl: string;
  baseRef: string;
  branch: string;
  agent: { commandTemplate: string; prompt: string };
  validationSteps: ResolvedValidationStep[];
  timeouts: ResolvedTimeouts;
  limits: ResolvedLimits;
  artifactGlobs: string[];
  commit: { authorName: string; authorEmail: string; message: string };
  env: Record<string, string>;
  labels: Record<string, string>;
}

/** A SubmitRunRequest that passed validation. */
export interface ValidatedSubmission {
  runtime: RuntimeName;
  /** The client's idempotency key; undefined when it sent none. */
  requestId: string | undefined;
  spec: ResolvedRunSpec;
}
