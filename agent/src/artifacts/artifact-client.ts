import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";

export type ArtifactClient = Client<typeof ArtifactService>;

export interface ArtifactConnection {
  client: ArtifactClient;
  /** Closes the HTTP/2 connection; calls still open fail. */
  close(): void;
}

/**
 * A client of the ArtifactService that authenticates every call with the attempt's
 * credential (`authorization: Bearer …`, in an interceptor so no call site handles it). One
 * HTTP/2 connection, owned here so the agent can close it; pings find a connection that died
 * silently while the run log's upload stream idles between flushes.
 */
export function createArtifactConnection(options: { url: string; credential: string; interceptors?: Interceptor[] }): ArtifactConnection {
  const connection = new Http2SessionManager(options.url, { pingIntervalMs: 10_000, pingTimeoutMs: 10_000 });
  const authenticate: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${options.credential}`);
    return next(request);
  };
  const transport = createGrpcTransport({ baseUrl: options.url, sessionManager: connection, interceptors: [authenticate, ...(options.interceptors ?? [])] });
  return { client: createClient(ArtifactService, transport), close: () => connection.abort() };
}
