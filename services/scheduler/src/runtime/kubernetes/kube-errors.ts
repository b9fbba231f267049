import { ApiException } from "@kubernetes/client-node";

function statusCode(error: unknown): number | undefined {
  if (error instanceof ApiException) return error.code;
  const code = (error as { code?: unknown; statusCode?: unknown } | null)?.code ?? (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === "number" ? code : undefined;
}

export const isNotFound = (error: unknown) => statusCode(error) === 404;
export const isAlreadyExists = (error: unknown) => statusCode(error) === 409;
export const isForbidden = (error: unknown) => statusCode(error) === 403;

/**
 * The apiserver's own message ("jobs.batch is forbidden: User ... cannot create ...") rather
 * than client-node's, which embeds the whole response, headers included.
 */
export function kubeErrorMessage(error: unknown): string {
  if (error instanceof ApiException) {
    const body = typeof error.body === "string" ? safeParse(error.body) : error.body;
    const message = (body as { message?: unknown } | undefined)?.message;
    return `HTTP ${error.code}: ${typeof message === "string" ? message : "no message"}`;
  }
  const cause = (error as { cause?: { code?: string } } | null)?.cause?.code;
  return `${(error as Error)?.message ?? String(error)}${cause ? ` (${cause})` : ""}`;
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
