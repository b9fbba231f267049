import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@corral/contract/grpc/health/v1/health_pb.ts";

/** Runs `start` with the CORRAL_HTTP_* knobs set, as a service reads them once at start-up. */
export async function withEnv<T>(env: Record<string, string>, start: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await start();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

export async function assertServing(url: string): Promise<void> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
  const response = await health.check({}, { timeoutMs: 2000 });
  assert.equal(response.status, HealthCheckResponse_ServingStatus.SERVING);
}

