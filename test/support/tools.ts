import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Test tools built from Go modules by test/tools/build-tools.sh and build-kube.sh, cached and
 * git-ignored: in CORRAL_TOOLS_CACHE when set (CI keeps one per user, so clean clones reuse the
 * Go builds), else in the checkout's .cache/tools.
 */
export const TOOLS_CACHE = process.env.CORRAL_TOOLS_CACHE || fileURLToPath(new URL("../../.cache/tools/", import.meta.url));
export const TOOLS_BIN = join(TOOLS_CACHE, "bin") + "/";

export function grpcurlPath(): string {
  return process.env.CORRAL_GRPCURL ?? `${TOOLS_BIN}grpcurl`;
}

/** The control plane the kubernetes suites run against (test/tools/build-kube.sh). */
export interface KubeBinaries {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
}

export function kubeBinaries(): KubeBinaries {
  return {
    etcd: `${TOOLS_BIN}etcd`,
    kubeApiserver: `${TOOLS_BIN}kube-apiserver`,
    kubeControllerManager: `${TOOLS_BIN}kube-controller-manager`,
  };
}

/** Why the kubernetes suites cannot run here, or undefined when every binary is built. */
export function missingKubeBinaries(): string | undefined {
  const missing = Object.values(kubeBinaries()).filter((path) => !existsSync(path));
  if (missing.length === 0) return undefined;
  return (
    `${missing.join(", ")} not built; run \`npm run tools\` (test/tools/build-kube.sh), which needs Go ` +
    `(${hasGo() ? "found on PATH" : "not found on PATH"}) and the Go module proxy`
  );
}

function hasGo(): boolean {
  return (process.env.PATH ?? "").split(":").some((dir) => dir !== "" && existsSync(join(dir, "go")));
}
