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
      return { ...res, message: mapErrors(res.message, (error) => translate(error, procedure)) };
    } catch (error) {
      throw translate(error, procedure);
    }
  };
}

/**
 * The stream with each error it throws mapped. A plain iterator, not an async generator around
 * `yield*`: long-lived streams sit idle in `next()` by the thousand (attached agents), and each
 * suspended generator layer holds its own request queue and promises.
 */
function mapErrors<T>(messages: AsyncIterable<T>, map: (error: unknown) => unknown): AsyncIterable<T> {
  const rethrow = (error: unknown): never => {
    throw map(error);
  };
  return {
    [Symbol.asyncIterator]() {
      const iterator = messages[Symbol.asyncIterator]();
      return {
        next: () => iterator.next().catch(rethrow),
        return: (value?: unknown) => (iterator.return ? iterator.return(value).catch(rethrow) : Promise.resolve({ done: true as const, value: value as never })),
        throw: (error?: unknown) => (iterator.throw ? iterator.throw(error).catch(rethrow) : Promise.reject(map(error))),
      };
    },
  };
}
