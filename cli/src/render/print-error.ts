import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";

/**
 * A service error as a person should read it: the code, the message, every rejected field. An
 * unreachable service is named with the URL the CLI tried.
 */
export function errorText(error: unknown, url: string, service = "scheduler"): string {
  const connect = ConnectError.from(error);
  if (connect.code === Code.Unavailable) return `cannot reach the ${service} at ${url} (is \`corral up\` running?): ${connect.rawMessage}`;
  const violations = connect.findDetails(FieldViolationsSchema).flatMap((d) => d.violations);
  if (violations.length > 0) return ["the request was rejected:", ...violations.map((v) => `  ${v.field}: ${v.description}`)].join("\n");
  return `${Code[connect.code] ?? connect.code}: ${connect.rawMessage}`;
}

/** A failure whose message is already what the user should read; the command exits 1. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandError";
  }
}

/** The code of a service error, or undefined for anything else. */
export const codeOf = (error: unknown): Code | undefined => (error instanceof ConnectError ? error.code : undefined);
