#!/usr/bin/env bash
# Builds the real Kubernetes control plane the kubernetes suites run against —
# kube-apiserver, kube-controller-manager and etcd — from their Go modules at pinned
# versions, into the tools cache (git-ignored). Cached: a second run with the same
# versions does nothing. Cold (empty module and build caches) it took 7 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache="${CORRAL_TOOLS_CACHE:-$root/.cache/tools}"
export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOFLAGS=-mod=mod GOTOOLCHAIN=local
bin="$cache/bin"
mkdir -p "$bin"

if ! command -v go >/dev/null 2>&1; then
  echo "build-kube: Go is not installed; the kubernetes suites will be skipped" >&2
  exit 0
fi

KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.16

build_kube() {
  local work="$cache/kube-build"
  rm -rf "$work" && mkdir -p "$work"
  echo "build-kube: building kube-apiserver and kube-controller-manager $KUBE_VERSION (cold: about 7 minutes)"
  local upstream
  upstream=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  # k8s.io/kubernetes points its staging modules at ./staging; a module that depends
  # on it must map each one to the published k8s.io/X v0.<minor>.<patch>.
  local staging="v0.${KUBE_VERSION#v1.}" minor
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  {
    echo "module corral.test/kube"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    grep -o 'k8s.io/[a-z0-9-]* => ./staging' "$upstream" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
  (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true
   cd "$work" && go get "k8s.io/kubernetes@$KUBE_VERSION" \
     && go build -tags tools -o "$bin/" \
        -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  echo "$KUBE_VERSION" > "$cache/kube.version"
}

build_etcd() {
  # A separate wrapper module so etcd's dependencies don't move the Kubernetes ones.
  local work="$cache/etcd-build"
  rm -rf "$work" && mkdir -p "$work"
  echo "build-kube: building etcd $ETCD_VERSION"
  printf 'module corral.test/etcd\n\ngo 1.26.0\n' > "$work/go.mod"
  (cd "$work" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
     && go build -o "$bin/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3)
  echo "$ETCD_VERSION" > "$cache/etcd.version"
}

if [ "$(cat "$cache/kube.version" 2>/dev/null)" != "$KUBE_VERSION" ] \
  || [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ]; then
  build_kube
fi
if [ "$(cat "$cache/etcd.version" 2>/dev/null)" != "$ETCD_VERSION" ] || [ ! -x "$bin/etcd" ]; then
  build_etcd
fi
