import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationsSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";

/** What a failed call says to a person: the service's message, or where the service is not. */
export function errorText(error: unknown): string {
  const connect = ConnectError.from(error);
  if (connect.code === Code.Unavailable) return `The service is not reachable right now (${connect.rawMessage}).`;
  if (connect.code === Code.Unauthenticated) return `Refused: ${connect.rawMessage}. Is the dashboard's artifact service token (CORRAL_ARTIFACT_SERVICE_TOKEN) the artifact service's?`;
  return connect.rawMessage || Code[connect.code] || "request failed";
}

export const codeOf = (error: unknown): Code => ConnectError.from(error).code;

/** INVALID_ARGUMENT's field violations, by field path (spec.repository_url), in order. */
export function fieldViolations(error: unknown): { field: string; description: string }[] {
  const connect = ConnectError.from(error);
  if (connect.code !== Code.InvalidArgument) return [];
  return connect.findDetails(FieldViolationsSchema).flatMap((d) => d.violations.map((v) => ({ field: v.field, description: v.description })));
}

/** A wait that ends early, without throwing, when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Backoff for reconnecting: 0.5 s doubling to 8 s, with jitter so many pages do not retry in step. */
export function backoffMs(failures: number): number {
  const base = Math.min(8000, 500 * 2 ** Math.min(failures, 4));
  return base / 2 + Math.random() * (base / 2);
}
