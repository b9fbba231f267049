import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";

/** A service error as a person should read it: the code, the message, every rejected field. */
export function errorText(error: unknown, schedulerUrl: string): string {
  const connect = ConnectError.from(error);
  if (connect.code === Code.Unavailable) return `cannot reach the scheduler at ${schedulerUrl} (is \`corral up\` running?): ${connect.rawMessage}`;
  const violations = connect.findDetails(FieldViolationsSchema).flatMap((d) => d.violations);
  if (violations.length > 0) return ["the request was rejected:", ...violations.map((v) => `  ${v.field}: ${v.description}`)].join("\n");
  return `${Code[connect.code] ?? connect.code}: ${connect.rawMessage}`;
}
