import type { AgentSpec } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { commandTemplatePlaceholders, unknownPlaceholders } from "./command-template-placeholders.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import { hasControlCharacterExceptLineBreaks, utf8Bytes } from "./text-checks.ts";
import type { Violations } from "./violations.ts";

/** Checks spec.agent. An unset agent is reported field by field, like an empty one. */
export function checkAgent(agent: AgentSpec | undefined, violations: Violations): { commandTemplate: string; prompt: string } {
  const commandTemplate = agent?.commandTemplate ?? "";
  const prompt = agent?.prompt ?? "";
  const templateProblem = commandTemplateProblem(commandTemplate);
  if (templateProblem !== undefined) violations.add("spec.agent.command_template", templateProblem);
  const promptProblem = promptProblemOf(prompt);
  if (promptProblem !== undefined) violations.add("spec.agent.prompt", promptProblem);
  return { commandTemplate, prompt };
}

function commandTemplateProblem(template: string): string | undefined {
  if (template.trim() === "") return "is required";
  if (utf8Bytes(template) > submitRunLimits.commandTemplateBytes) return `must be at most ${submitRunLimits.commandTemplateBytes} bytes`;
  if (hasControlCharacterExceptLineBreaks(template)) return "must not contain control characters other than tab and line breaks";
  const unknown = unknownPlaceholders(template);
  if (unknown.length > 0) {
    const known = commandTemplatePlaceholders.map((p) => `{${p}}`).join(", ");
    return `unknown placeholder${unknown.length > 1 ? "s" : ""} ${unknown.map((p) => `{${p}}`).join(", ")}; known: ${known}`;
  }
  return undefined;
}

function promptProblemOf(prompt: string): string | undefined {
  // A prompt of only whitespace gives the agent nothing to do and the commit no subject.
  if (prompt.trim() === "") return "is required";
  if (utf8Bytes(prompt) > submitRunLimits.promptBytes) return `must be at most ${submitRunLimits.promptBytes} bytes`;
  // The prompt is written to a file and read by tools that treat NUL as end of text.
  if (prompt.includes("\0")) return "must not contain NUL characters";
  return undefined;
}
