#!/usr/bin/env bash
# Builds the upstream test tools that Corral's suites drive, from Go modules, into
# the tools cache: CORRAL_TOOLS_CACHE, else .cache/tools (git-ignored). Cached: a second run with
# the same versions does nothing. Then build-kube.sh builds the Kubernetes control plane.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache="${CORRAL_TOOLS_CACHE:-$root/.cache/tools}"
export GOBIN="$cache/bin" GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOFLAGS=-mod=mod
mkdir -p "$GOBIN"

if ! command -v go >/dev/null 2>&1; then
  echo "build-tools: Go is not installed; the suites that need these tools will be skipped" >&2
  exit 0
fi

GRPCURL_VERSION=v1.9.4
if [ "$(cat "$cache/grpcurl.version" 2>/dev/null)" != "$GRPCURL_VERSION" ] || [ ! -x "$GOBIN/grpcurl" ]; then
  echo "build-tools: building grpcurl $GRPCURL_VERSION"
  go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  echo "$GRPCURL_VERSION" > "$cache/grpcurl.version"
fi

# v5.8.3 needs Go 1.27; v5.8.2 is the newest that builds with Go 1.26.
KUSTOMIZE_VERSION=v5.8.2
if [ "$(cat "$cache/kustomize.version" 2>/dev/null)" != "$KUSTOMIZE_VERSION" ] || [ ! -x "$GOBIN/kustomize" ]; then
  echo "build-tools: building kustomize $KUSTOMIZE_VERSION"
  go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  echo "$KUSTOMIZE_VERSION" > "$cache/kustomize.version"
fi

bash "$root/test/tools/build-kube.sh"
