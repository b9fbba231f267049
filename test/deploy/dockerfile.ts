import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, posix } from "node:path";

/** One instruction of a Dockerfile, continuation lines joined. */
export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

export interface Stage {
  /** The `AS` name, lower-cased as BuildKit compares them. */
  name: string | undefined;
  /** The FROM argument: an image or an earlier stage's name. */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Map<string, string | undefined>;
  stages: Stage[];
}

/**
 * Parses the subset of Dockerfile syntax Corral's Dockerfiles use: instructions, `\`
 * continuations, comment lines (also inside continuations, as BuildKit allows), stages.
 * Heredocs are not supported: a Dockerfile that gains one fails the tests, on purpose.
 */
export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith("#") || (trimmed === "" && pending === undefined)) return;
    if (trimmed.includes("<<")) throw new Error(`line ${index + 1}: heredocs are not supported by this parser`);
    const continued = trimmed.endsWith("\\");
    const part = continued ? trimmed.slice(0, -1) : trimmed;
    pending = pending ? { text: `${pending.text} ${part}`, line: pending.line } : { text: part, line: index + 1 };
    if (!continued) {
      const match = /^(\S+)\s*(.*)$/s.exec(pending.text.trim());
      if (match) instructions.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim(), line: pending.line });
      pending = undefined;
    }
  });

  const globalArgs = new Map<string, string | undefined>();
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith("--"));
      const as = words.findIndex((w) => w.toUpperCase() === "AS");
      stages.push({ from: words[0]!, name: as >= 0 ? words[as + 1]?.toLowerCase() : undefined, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== "ARG") throw new Error(`line ${instruction.line}: ${instruction.keyword} before the first FROM`);
      const [name, value] = instruction.args.split("=", 2) as [string, string | undefined];
      globalArgs.set(name.trim(), value?.trim());
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

/**
 * A FROM argument with the ARGs declared before the first FROM replaced by their defaults
 * (`${NAME}` and `$NAME`), as BuildKit expands them when no --build-arg overrides one.
 */
export function expandGlobalArgs(dockerfile: Dockerfile, text: string): string {
  let expanded = text;
  for (let round = 0; round < 10; round++) {
    const next = expanded.replace(/\$\{(\w+)\}|\$(\w+)/g, (match, braced: string | undefined, bare: string | undefined) => dockerfile.globalArgs.get((braced ?? bare)!) ?? match);
    if (next === expanded) return expanded;
    expanded = next;
  }
  return expanded;
}

export function stageNamed(dockerfile: Dockerfile, name: string): Stage | undefined {
  return dockerfile.stages.find((s) => s.name === name.toLowerCase());
}

/** The stage and the stages it is built FROM, nearest first. */
export function stageChain(dockerfile: Dockerfile, stage: Stage): Stage[] {
  const chain = [stage];
  for (let parent = stageNamed(dockerfile, stage.from); parent; parent = stageNamed(dockerfile, parent.from)) {
    if (chain.includes(parent)) throw new Error(`stage cycle at ${parent.name}`);
    chain.push(parent);
  }
  return chain;
}

/** The last instruction of a keyword in effect for a stage (its own, then its parents'). */
export function effective(dockerfile: Dockerfile, stage: Stage, keyword: string): Instruction | undefined {
  for (const s of stageChain(dockerfile, stage)) {
    const found = s.instructions.filter((i) => i.keyword === keyword).at(-1);
    if (found) return found;
  }
  return undefined;
}

/** Every ENV assignment in effect for a stage (`ENV KEY=value`, one or more per line). */
export function effectiveEnv(dockerfile: Dockerfile, stage: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const s of stageChain(dockerfile, stage).reverse()) {
    for (const i of s.instructions.filter((i) => i.keyword === "ENV")) {
      for (const m of i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) env.set(m[1]!, m[2]!.replace(/^"|"$/g, ""));
    }
  }
  return env;
}

export interface Copy {
  from: string | undefined;
  sources: string[];
  destination: string;
  instruction: Instruction;
}

/** The COPY (and ADD) instructions of a stage, flags separated from paths. */
export function copies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === "COPY" || i.keyword === "ADD")
    .map((instruction) => {
      const words = instruction.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith("--"));
      const paths = words.filter((w) => !w.startsWith("--"));
      const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
      return { from: from?.toLowerCase(), sources: paths.slice(0, -1), destination: paths.at(-1)!, instruction };
    });
}

/** An exec-form CMD or ENTRYPOINT as its argument list; undefined for the shell form. */
export function execForm(instruction: Instruction | undefined): string[] | undefined {
  if (!instruction?.args.startsWith("[")) return undefined;
  return JSON.parse(instruction.args) as string[];
}

interface IgnorePattern {
  exclusion: boolean;
  regexp: RegExp;
}

/**
 * A .dockerignore file with the semantics of moby/patternmatcher, which BuildKit and skaffold
 * use: patterns are cleaned paths; `*` and `?` stay within one path segment, `**` crosses
 * them; `!` re-includes; a pattern that matches a parent directory matches what is inside
 * it; and a pattern is only evaluated when it could change the outcome so far.
 */
export class DockerIgnore {
  readonly patterns: IgnorePattern[];

  constructor(text: string) {
    this.patterns = [];
    for (const line of text.split(/\r?\n/)) {
      let pattern = line.trim();
      if (pattern === "" || pattern.startsWith("#")) continue;
      const exclusion = pattern.startsWith("!");
      if (exclusion) pattern = pattern.slice(1).trim();
      pattern = posix.normalize(pattern).replace(/\/+$/, "");
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
      this.patterns.push({ exclusion, regexp: toRegExp(pattern) });
    }
  }

  /** Whether a context-relative file path is left out of the build context. */
  ignores(path: string): boolean {
    const file = posix.normalize(path).replace(/\/+$/, "");
    const segments = file.split("/");
    const parents = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join("/"));
    let matched = false;
    for (const pattern of this.patterns) {
      if (pattern.exclusion !== matched) continue;
      const match = pattern.regexp.test(file) || parents.some((parent) => pattern.regexp.test(parent));
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }
}

function toRegExp(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === "*" && pattern[i + 1] === "*") {
      i++;
      if (pattern[i + 1] === "/") i++;
      source += i + 1 >= pattern.length ? ".*" : "(.*/)?";
    } else if (ch === "*") {
      source += "[^/]*";
    } else if (ch === "?") {
      source += "[^/]";
    } else if (ch === "\\" && i + 1 < pattern.length) {
      source += escapeRegExp(pattern[++i]!);
    } else {
      source += escapeRegExp(ch);
    }
  }
  return new RegExp(`^${source}$`);
}

function escapeRegExp(ch: string): string {
  return /[.+^${}()|[\]\\]/.test(ch) ? `\\${ch}` : ch;
}

/** Files under a context-relative path (itself, if it is a file), relative to the context. */
export function filesUnder(context: string, path: string): string[] {
  const absolute = join(context, path);
  if (!existsSync(absolute)) return [];
  if (!statSync(absolute).isDirectory()) return [posix.normalize(path)];
  return readdirSync(absolute, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => posix.relative(context, join(entry.parentPath, entry.name)));
}

export function readText(path: string): string {
  return readFileSync(path, "utf8");
}
