import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { findServiceToken } from "./artifacts/service-token.ts";

export interface ArtifactAccess {
  client: Client<typeof ArtifactService>;
  url: string;
  /** Call options carrying the service token. */
  auth: { headers: { authorization: string } };
  /** Where the token came from (a variable's or a file's name), for error messages. */
  tokenSource: string;
}

/** Thrown when no token is to be found; the message says where to get one. */
export class NoServiceTokenError extends Error {
  constructor(looked: string) {
    super(
      `no artifact service token: set CORRAL_ARTIFACT_SERVICE_TOKEN, or run this where \`corral up\` runs ` +
        `(it writes the token of its stack to ${looked}; set CORRAL_HOME if that is elsewhere)`,
    );
    this.name = "NoServiceTokenError";
  }
}

/**
 * The ArtifactService at --artifact-url, else CORRAL_ARTIFACT_URL (default http://127.0.0.1:8702),
 * read with the service token (see findServiceToken).
 */
export async function createArtifactClient(flagUrl: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<ArtifactAccess> {
  const url = flagUrl || env.CORRAL_ARTIFACT_URL || "http://127.0.0.1:8702";
  const found = await findServiceToken(env);
  if (found.token === undefined) throw new NoServiceTokenError(found.looked);
  return {
    client: createClient(ArtifactService, createGrpcTransport({ baseUrl: url })),
    url,
    auth: { headers: { authorization: `Bearer ${found.token}` } },
    tokenSource: found.source,
  };
}
