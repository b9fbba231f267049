import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { startArtifact, type ArtifactServer } from "@corral/artifact/start-artifact.ts";
import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";

/** The service token of the artifact services the fixtures start: the scheduler's and CLI's way in. */
export const ARTIFACT_SERVICE_TOKEN = "artifact-service-token-for-tests-0123456789";

export interface ArtifactServiceFixture {
  server: ArtifactServer;
  url: string;
  /** A client that reads any run's artifacts with the service token. */
  client: Client<typeof ArtifactService>;
  /** Call options carrying the service token. */
  auth: { headers: { authorization: string } };
  close(): Promise<void>;
}

/** A real artifact service on a free port, on an existing (migrated) database, storing in a fresh temp dir. */
export async function startArtifactService(databaseUrl: string, env: Record<string, string> = {}): Promise<ArtifactServiceFixture> {
  const dir = await mkdtemp(join(tmpdir(), "corral-artifacts-"));
  const config = loadConfig(artifactConfig, {
    DATABASE_URL: databaseUrl,
    CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
    CORRAL_ARTIFACT_DIR: join(dir, "store"),
    CORRAL_ARTIFACT_SERVICE_TOKEN: ARTIFACT_SERVICE_TOKEN,
    ...env,
  });
  const server = await startArtifact(config, createLogger({ name: "artifact", level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  return {
    server,
    url: server.server.url,
    client: createClient(ArtifactService, createGrpcTransport({ baseUrl: server.server.url })),
    auth: { headers: { authorization: `Bearer ${ARTIFACT_SERVICE_TOKEN}` } },
    async close() {
      await server.close(1000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A URL where nothing listens (a port that was free a moment ago): an artifact service that is down. */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
