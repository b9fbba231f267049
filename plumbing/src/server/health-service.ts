import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "@corral/contract/grpc/health/v1/health_pb.ts";

export { ServingStatus };

/**
 * grpc.health.v1.Health backed by a status per service name ("" is the whole server).
 * Kubernetes probes, load balancers and grpc_health_probe all speak it.
 */
export function createHealth(serviceNames: string[]) {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  for (const name of serviceNames) statuses.set(name, ServingStatus.SERVING);
  const watchers = new Set<() => void>();

  const response = (status: ServingStatus): HealthCheckResponse =>
    create(HealthCheckResponseSchema, { status });

  return {
    /** Marks every service, e.g. NOT_SERVING while draining. */
    setAll(status: ServingStatus): void {
      for (const key of statuses.keys()) statuses.set(key, status);
      for (const notify of watchers) notify();
    },
    status(service: string): ServingStatus | undefined {
      return statuses.get(service);
    },
    register(router: ConnectRouter): void {
      router.service(Health, {
        check(req) {
          const status = statuses.get(req.service);
          if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
          return response(status);
        },
        list() {
          return {
            statuses: Object.fromEntries([...statuses].map(([name, status]) => [name, response(status)])),
          };
        },
        async *watch(req, context) {
          let wake: () => void = () => {};
          const notify = () => wake();
          watchers.add(notify);
          try {
            let last: ServingStatus | undefined;
            while (!context.signal.aborted) {
              const status = statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
              if (status !== last) {
                last = status;
                yield response(status);
              }
              await new Promise<void>((resolve) => {
                wake = resolve;
                context.signal.addEventListener("abort", () => resolve(), { once: true });
              });
            }
            // Ended by a drain or the client: say why, rather than end as if the watch were done.
            context.signal.throwIfAborted();
          } finally {
            watchers.delete(notify);
          }
        },
      });
    },
  };
}

export type HealthController = ReturnType<typeof createHealth>;
