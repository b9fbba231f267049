import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";

/** The scheduler's RunService, at CORRAL_SCHEDULER_URL (default http://127.0.0.1:8700). */
export function createSchedulerClient(env: NodeJS.ProcessEnv = process.env): { client: Client<typeof RunService>; url: string } {
  const url = env.CORRAL_SCHEDULER_URL || "http://127.0.0.1:8700";
  return { client: createClient(RunService, createGrpcTransport({ baseUrl: url })), url };
}
