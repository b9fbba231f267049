/** The HTTP status of a failed Engine API call; undefined when the engine did not answer. */
export function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** 404; also podman's 500 for a container that vanished while it looked ("does not exist in database: no such container"). */
export const isNotFound = (error: unknown) =>
  statusCode(error) === 404 || (statusCode(error) === 500 && /no such container/i.test(JSON.stringify((error as { json?: unknown }).json ?? "")));
export const isConflict = (error: unknown) => statusCode(error) === 409;
/** Not running any more: Docker's 409, podman's 500 "container state improper". */
export const isNotRunning = (error: unknown) =>
  statusCode(error) === 409 || (statusCode(error) === 500 && /state improper|is not running/i.test(JSON.stringify((error as { json?: unknown }).json ?? "")));
/** 304: the container was already stopped (stop) or started (start). */
export const isNotModified = (error: unknown) => statusCode(error) === 304;

/** The engine did not answer at all (socket missing, refused, reset): not a fact about a container. */
export function isUnreachable(error: unknown): boolean {
  if (statusCode(error) !== undefined) return false;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" || (error as Error | null)?.message === "aborted";
}

/**
 * The engine's own message ("No such image: corral-agent:1") rather than dockerode's, which
 * wraps it in "(HTTP code 404) no such container - ..."; a connection failure names its code.
 */
export function engineErrorMessage(error: unknown): string {
  const status = statusCode(error);
  if (status !== undefined) {
    const json = (error as { json?: unknown }).json;
    const message = (json as { message?: unknown } | null)?.message ?? (typeof json === "string" ? json : undefined);
    return `HTTP ${status}: ${typeof message === "string" && message ? message.trim() : (error as Error).message}`;
  }
  const code = (error as { code?: unknown } | null)?.code;
  return `${(error as Error)?.message ?? String(error)}${typeof code === "string" && !(error as Error).message?.includes(code) ? ` (${code})` : ""}`;
}
