import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { DomainError } from "../errors.ts";
import type { Logger } from "../logger.ts";

/**
 * Maps whatever a handler throws to a gRPC status, in one place: domain errors keep their
 * code and typed details; anything else is logged with a reference and answered INTERNAL
 * without its message, so internals (SQL, paths, other runs' ids) never reach a client.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  const translate = (error: unknown, procedure: string): ConnectError => {
    if (error instanceof DomainError) return error.toConnectError();
    if (error instanceof ConnectError) return error;
    const ref = randomUUID();
    logger.error({ err: error, procedure, ref }, "unhandled error in handler");
    return new ConnectError(`internal error (ref ${ref})`, Code.Internal);
  };

  return (next) => async (req) => {
    const procedure = req.url;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (error) {
            throw translate(error, procedure);
          }
        })(),
      };
    } catch (error) {
      throw translate(error, procedure);
    }
  };
}
