import { z } from "zod";

/** Raised when the environment holds a value that does not validate; names the variable. */
export class ConfigError extends Error {
  readonly variables: string[];
  constructor(problems: { variable: string; message: string }[]) {
    super(
      "invalid configuration:\n" +
        problems.map((p) => `  ${p.variable}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
    this.variables = problems.map((p) => p.variable);
  }
}

/**
 * Reads the variables a schema names from the environment, validates them once and freezes
 * the result. Schema keys are the variable names, so every error names the variable the
 * user must fix.
 */
export function loadConfig<Shape extends z.ZodRawShape>(
  shape: Shape,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<z.infer<z.ZodObject<Shape>>> {
  const input: Record<string, string | undefined> = {};
  for (const key of Object.keys(shape)) {
    const value = env[key];
    // An empty variable means "not set", as shells make it easy to export one by mistake.
    input[key] = value === undefined || value === "" ? undefined : value;
  }
  const parsed = z.object(shape).safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => ({
        variable: String(issue.path[0] ?? "?"),
        message: issue.message,
      })),
    );
  }
  return Object.freeze(parsed.data);
}

/** A "host:port" listen address; port 0 asks the OS for a free port. */
export const listenAddress = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
      const port = match ? Number(match[2]) : NaN;
      if (!match || port > 65535) {
        ctx.addIssue({ code: "custom", message: `expected host:port, got "${value}"` });
        return z.NEVER;
      }
      return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
    });

export const logLevel = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");

export const postgresUrl = z
  .string()
  .refine((v) => /^postgres(ql)?:\/\//.test(v), "expected a postgres:// or postgresql:// URL");

/** Milliseconds, written as an integer with an optional unit: "500ms", "30s", "5m", "1h". */
export const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const match = /^(\d+)(ms|s|m|h)?$/.exec(value.trim());
      if (!match) {
        ctx.addIssue({ code: "custom", message: `expected a duration such as 500ms, 30s, 5m or 1h, got "${value}"` });
        return z.NEVER;
      }
      const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "ms"]!;
      return Number(match[1]) * unit;
    });

const UNITS: Record<string, number> = { "": 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** A byte count, written as an integer with an optional binary unit: "1048576", "512MiB", "4GiB". */
export const byteSize = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const match = /^(\d+)\s*(B|KiB|MiB|GiB|TiB)?$/.exec(value.trim());
      const bytes = match ? Number(match[1]) * UNITS[match[2] ?? ""]! : NaN;
      if (!match || !Number.isSafeInteger(bytes) || bytes <= 0) {
        ctx.addIssue({ code: "custom", message: `expected a positive byte count such as 1048576, 512MiB or 4GiB, got "${value}"` });
        return z.NEVER;
      }
      return bytes;
    });

export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
