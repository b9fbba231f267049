import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { ArtifactService } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { listArtifacts, queryUpload, statArtifact } from "./artifacts/query-artifacts.ts";
import type { Authenticator } from "./auth/create-authenticator.ts";
import { downloadArtifact } from "./downloads/download-artifact.ts";
import { receiveUpload } from "./uploads/receive-upload.ts";
import type { ArtifactDeps } from "./uploads/upload-deps.ts";

/** corral.artifact.v1.ArtifactService: authenticate, then hand over to the domain modules. */
export function createArtifactService(deps: ArtifactDeps & { auth: Authenticator }): ServiceImpl<typeof ArtifactService> {
  const principal = (context: HandlerContext) => deps.auth.authenticate(context.requestHeader.get("authorization"));
  return {
    async upload(requests, context) {
      // Before the first message: an unauthenticated client is refused before it sends any data.
      return receiveUpload(deps, await principal(context), requests, context.signal);
    },
    async queryUpload(request, context) {
      return queryUpload(deps.store, await principal(context), request);
    },
    async *download(request, context) {
      yield* downloadArtifact(deps, await principal(context), request, context.signal);
    },
    async stat(request, context) {
      return statArtifact(deps.store, await principal(context), request);
    },
    async list(request, context) {
      return listArtifacts(deps.store, await principal(context), request);
    },
  };
}
