import { writeFile } from "node:fs/promises";

/** The values an agent command template may refer to, by placeholder name. */
export interface CommandTemplateValues {
  prompt_file: string;
  repo_dir: string;
  run_id: string;
}

/**
 * `{name}` is a placeholder; `${name}` is left alone because it is the shell's own parameter
 * expansion, and so is anything in braces that is not a plain identifier (`{}`, `{a,b}`,
 * `{print $1}`).
 */
const PLACEHOLDER = /(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces the placeholders of an agent command template (AgentSpec.command_template) with
 * shell-quoted values, so a path with spaces or quotes stays one word. A placeholder is a
 * whole word of its own: inside "double quotes" the quoting would show. Throws, naming every
 * unknown placeholder, rather than running a command with a hole in it.
 */
export function renderCommandTemplate(template: string, values: CommandTemplateValues): string {
  const known = new Map<string, string>(Object.entries(values));
  const unknown = [...new Set([...template.matchAll(PLACEHOLDER)].map((match) => match[1]!).filter((name) => !known.has(name)))];
  if (unknown.length > 0) {
    const names = unknown.map((name) => `{${name}}`).join(", ");
    throw new Error(`unknown placeholder${unknown.length > 1 ? "s" : ""} ${names} in the agent command template; known: ${[...known.keys()].map((name) => `{${name}}`).join(", ")}`);
  }
  return template.replace(PLACEHOLDER, (_match, name: string) => shellQuote(known.get(name)!));
}

/**
 * Writes the prompt to `promptFile` (which must lie outside the repository, or the prompt
 * would be committed) and renders the command that reads it. The prompt never touches the
 * command line, so it needs no quoting and cannot inject shell syntax.
 */
export async function prepareAgentCommand(options: {
  template: string;
  prompt: string;
  promptFile: string;
  repoDir: string;
  runId: string;
}): Promise<string> {
  const command = renderCommandTemplate(options.template, {
    prompt_file: options.promptFile,
    repo_dir: options.repoDir,
    run_id: options.runId,
  });
  await writeFile(options.promptFile, options.prompt, { mode: 0o600 });
  return command;
}

/** POSIX single quoting: everything is literal inside '...', and a ' is written as '\''. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
