import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Paths pino blanks in every record. Credentials and tokens must never reach a log: this
 * list is tested, and new secret-bearing fields belong here.
 */
export const REDACTED_PATHS = [
  "credential",
  "*.credential",
  "token",
  "*.token",
  "password",
  "*.password",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "gitCredentials",
  "*.gitCredentials",
  "git_credentials",
  "*.git_credentials",
  "databaseUrl",
  "*.databaseUrl",
];

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Where records go; standard output when omitted. Tests pass a stream to inspect. */
  destination?: pino.DestinationStream;
}

/** Structured JSON logs with secrets redacted. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? "info",
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
