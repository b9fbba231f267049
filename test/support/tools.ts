import { fileURLToPath } from "node:url";

/** Test tools built from Go modules by test/tools/build-tools.sh, cached and git-ignored. */
export const TOOLS_BIN = fileURLToPath(new URL("../../.cache/tools/bin/", import.meta.url));

export function grpcurlPath(): string {
  return process.env.CORRAL_GRPCURL ?? `${TOOLS_BIN}grpcurl`;
}
