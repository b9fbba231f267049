import type { PipelineResult, RunPipelineOptions } from "../pipeline/run-pipeline.ts";

export type {
  OutputEvent,
  PipelineObserver,
  PipelinePhase,
  PipelineResult,
  PipelineSpec,
  PipelineStepKind,
  PipelineStepOutcome,
  RunPipelineOptions,
  StepFinishedEvent,
  StepStartedEvent,
} from "../pipeline/run-pipeline.ts";

/**
 * What the attempt runner needs from a pipeline executor: `runPipeline` of
 * agent/src/pipeline, or a fake in tests. It must not reject for anything a run can do wrong,
 * must report through the observer synchronously, and must stop when the signal aborts (a
 * `CancelRequest` reason carries the cancel's grace).
 */
export type PipelinePort = (options: RunPipelineOptions) => Promise<PipelineResult>;
