import type { OutputEvent, PipelineObserver, PipelinePhase, PipelineSpec, StepFinishedEvent, StepStartedEvent } from "../../../agent/src/pipeline/run-pipeline.ts";

/** An observer that records everything, for assertions. */
export function recordingObserver(onOutput?: (chunk: OutputEvent) => void) {
  const phases: PipelinePhase[] = [];
  const started: StepStartedEvent[] = [];
  const finished: StepFinishedEvent[] = [];
  const outputs: OutputEvent[] = [];
  const observer: PipelineObserver = {
    phaseChanged: (phase) => phases.push(phase),
    stepStarted: (step) => started.push(step),
    stepFinished: (step) => finished.push(step),
    output(chunk) {
      outputs.push(chunk);
      onOutput?.(chunk);
    },
  };
  const outputOf = (step: string) => Buffer.concat(outputs.filter((chunk) => chunk.step === step).map((chunk) => chunk.data)).toString("utf8");
  const allOutput = () => Buffer.concat(outputs.map((chunk) => chunk.data));
  const outcomes = () => finished.map((step) => `${step.name}:${step.outcome}`);
  return { observer, phases, started, finished, outputs, outputOf, allOutput, outcomes };
}

/** A spec that edits README.md and validates it, with budgets small enough for tests. */
export function testSpec(repositoryUrl: string, overrides: Partial<PipelineSpec> = {}): PipelineSpec {
  return {
    repositoryUrl,
    baseRef: "main",
    branch: "corral/run-1",
    agent: { commandTemplate: "printf 'fixed\\n' >> README.md", prompt: "Fix the README" },
    validationSteps: [{ name: "readme-fixed", command: "grep -q fixed README.md", timeoutMs: 10_000 }],
    timeouts: { stepMs: 20_000, cloneMs: 20_000, graceMs: 1_000 },
    commit: { authorName: "Corral Bot", authorEmail: "bot@corral.dev", message: "Fix the README" },
    env: {},
    ...overrides,
  };
}
