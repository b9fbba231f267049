/** What the agent substitutes in a command template before running it. */
export const commandTemplatePlaceholders: readonly string[] = ["prompt_file", "repo_dir", "run_id"];

/**
 * A placeholder is "{identifier}" not preceded by "$". Shell text that merely contains
 * braces is left alone: "${HOME}" (a variable), "{a,b}" (brace expansion) and
 * "awk '{print $1}'" are not placeholders. The agent must substitute with this same pattern.
 */
export const placeholderPattern = /(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Placeholders in `template` that the agent would not substitute, each named once. */
export function unknownPlaceholders(template: string): string[] {
  const unknown = new Set<string>();
  for (const match of template.matchAll(placeholderPattern)) {
    const name = match[1] ?? "";
    if (!commandTemplatePlaceholders.includes(name)) unknown.add(name);
  }
  return [...unknown];
}
