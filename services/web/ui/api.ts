import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";

/**
 * The contract's own services, through the web service that serves this page: the Connect
 * protocol over HTTP/1.1 (browsers do not speak h2c), binary messages.
 */
const transport = createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true });

export const runs: Client<typeof RunService> = createClient(RunService, transport);
export const artifacts: Client<typeof ArtifactService> = createClient(ArtifactService, transport);

/** The dashboard's route that saves an artifact as a file (a plain GET streaming Download). */
export function downloadUrl(runId: string, name: string): string {
  return `/download?${new URLSearchParams({ run: runId, name })}`;
}
