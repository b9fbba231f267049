import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { ConnectError, type CallOptions, type Client, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";

export interface ForwardOptions {
  /** Headers added to every forwarded call (the artifact service token). Incoming headers are never forwarded. */
  headers?: Record<string, string>;
}

/**
 * An implementation of `service` that forwards the named methods to `client` (the real service),
 * one call each: unary answers and server streams message by message, the caller's AbortSignal
 * and deadline carried upstream, errors with their code, message and typed details. Methods not
 * named are left out, so the router answers them UNIMPLEMENTED.
 */
export function forwardService<S extends DescService>(service: S, client: Client<S>, methods: readonly string[], options: ForwardOptions = {}): Partial<ServiceImpl<S>> {
  const implementation: Record<string, unknown> = {};
  for (const method of service.methods) {
    if (!methods.includes(method.localName)) continue;
    const call = (client as unknown as Record<string, (request: unknown, options: CallOptions) => unknown>)[method.localName]!.bind(client);
    implementation[method.localName] = forwarder(method, call, options);
  }
  const unknown = methods.filter((name) => !service.methods.some((m) => m.localName === name));
  if (unknown.length > 0) throw new TypeError(`${service.typeName} has no method ${unknown.join(", ")}`);
  return implementation as Partial<ServiceImpl<S>>;
}

function forwarder(method: DescMethod, call: (request: unknown, options: CallOptions) => unknown, options: ForwardOptions) {
  const callOptions = (context: HandlerContext): CallOptions => ({ signal: context.signal, timeoutMs: context.timeoutMs(), headers: options.headers });
  switch (method.methodKind) {
    case "unary":
      return async (request: unknown, context: HandlerContext) => {
        try {
          return await (call(request, callOptions(context)) as Promise<unknown>);
        } catch (error) {
          throw error instanceof ConnectError ? relayed(error) : error;
        }
      };
    case "server_streaming":
      return async function* (request: unknown, context: HandlerContext) {
        try {
          yield* call(request, callOptions(context)) as AsyncIterable<unknown>;
        } catch (error) {
          throw error instanceof ConnectError ? relayed(error) : error;
        }
      };
    default:
      throw new TypeError(`forwarding ${method.methodKind} methods (${method.name}) is not supported`);
  }
}

/**
 * The upstream's error as this server's own: same code, message and details, but none of the
 * upstream response's headers or trailers, which describe another hop (gRPC over HTTP/2).
 * Anything else is a bug here, left to the error interceptor (INTERNAL, logged, no message).
 */
function relayed(upstream: ConnectError): ConnectError {
  const error = new ConnectError(upstream.rawMessage, upstream.code);
  // Received details stay encoded (type name and bytes) and are sent on exactly as they came.
  error.details = upstream.details;
  return error;
}
