#!/usr/bin/env bash
# Builds the runner agent's image where no container registry can be reached.
#
#   deploy/docker/build-agent-image.sh [-t TAG] [extra `build` arguments...]
#
# 1. A minimal Debian root filesystem from Debian packages (debootstrap, variant minbase) with
#    git, CA certificates, ssh and tini: what agent.Dockerfile would otherwise apt-get.
# 2. Node (the binary of the repository's `node` devDependency, node_modules/node/bin/node,
#    the same release the Dockerfile's registry base image carries) and npm (the host's, a
#    pure-JavaScript package) added to it, the whole imported as a base image. It is cached
#    under a tag derived from this script, the Debian suite and the Node version.
# 3. deploy/docker/agent.Dockerfile built on that base (--build-arg BASE_IMAGE), unchanged:
#    the same Dockerfile builds from node:<version>-bookworm-slim where a registry is there.
#    Its `npm ci` reaches the npm registry with the build sharing the host's network, and with
#    the host's CA bundle as a build secret (a registry behind a TLS-inspecting proxy).
#
# Needs root (debootstrap), podman or docker (CONTAINER_ENGINE), and the repository's npm
# dependencies installed (`npm ci`). Environment: CONTAINER_ENGINE (default: podman if present,
# else docker), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: the Debian source apt uses
# here), NODE_BINARY, CA_BUNDLE (default: NODE_EXTRA_CA_CERTS, else the system bundle).
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=corral-agent:latest
if [ "${1:-}" = "-t" ] || [ "${1:-}" = "--tag" ]; then
  tag=${2:?"$1 needs a value"}
  shift 2
fi

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v podman >/dev/null; then engine=podman; else engine=docker; fi
fi
command -v "$engine" >/dev/null || { echo "build-agent-image: $engine is not installed" >&2; exit 1; }

suite=${DEBIAN_SUITE:-bookworm}
node_binary=${NODE_BINARY:-node_modules/node/bin/node}
[ -x "$node_binary" ] || { echo "build-agent-image: $node_binary is missing; run npm ci first (the node devDependency provides it)" >&2; exit 1; }
node_version=$("$node_binary" --version)
node_version=${node_version#v}
npm_cli=$(command -v npm || true)
[ -n "$npm_cli" ] || { echo "build-agent-image: npm is not installed on this host; the base image takes the host's npm" >&2; exit 1; }
npm_dir=$(dirname "$(dirname "$(readlink -f "$npm_cli")")")
[ -f "$npm_dir/package.json" ] || { echo "build-agent-image: cannot find npm's package directory from $npm_cli" >&2; exit 1; }

# The Debian source apt already uses here (deb822 .sources files, then sources.list).
debian_mirror() {
  local found
  found=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$found" ] || found=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null | head -n 1)
  echo "$found"
}

script_hash=$(sha256sum "$0" | cut -c1-12)
base_tag="corral-agent-base:${suite}-node${node_version}-${script_hash}"

elapsed() { echo "$(( $(date +%s) - started ))s"; }
started=$(date +%s)

if "$engine" image inspect "$base_tag" >/dev/null 2>&1; then
  echo "build-agent-image: base $base_tag is cached"
else
  command -v debootstrap >/dev/null || { echo "build-agent-image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "build-agent-image: debootstrap needs root" >&2; exit 1; }
  mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
  [ -n "$mirror" ] || { echo "build-agent-image: no Debian mirror found in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/corral-agent-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "build-agent-image: debootstrap $suite (minbase + git, ca-certificates, openssh-client, tini)"
  debootstrap --variant=minbase --include=ca-certificates,git,openssh-client,tini "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # What a container never needs: downloaded packages, package lists, documentation, locales.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale
  # The engine provides these per container.
  : >"$rootfs/etc/resolv.conf"
  rm -f "$rootfs/etc/hostname"
  echo "build-agent-image: adding Node $node_version and npm $(node "$npm_dir/bin/npm-cli.js" --version 2>/dev/null || echo '?') ($(elapsed))"
  install -D -m 0755 "$node_binary" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  echo "build-agent-image: importing $base_tag ($(elapsed))"
  tar -C "$rootfs" --numeric-owner -c . | "$engine" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$base_tag" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

build_args=(build --network host -f deploy/docker/agent.Dockerfile --build-arg "BASE_IMAGE=$base_tag" -t "$tag")
# podman does not pick up the ignore file named after the Dockerfile by itself; BuildKit does.
if [ "$engine" = podman ]; then build_args+=(--ignorefile deploy/docker/agent.Dockerfile.dockerignore); fi
ca_bundle=${CA_BUNDLE:-${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}}
if [ -s "$ca_bundle" ]; then build_args+=(--secret "id=ca-certificates,src=$ca_bundle"); fi
echo "build-agent-image: building $tag from deploy/docker/agent.Dockerfile on $base_tag ($(elapsed))"
"$engine" "${build_args[@]}" "$@" . >"${TMPDIR:-/tmp}/corral-agent-build.$$.log" 2>&1 \
  || { tail -n 40 "${TMPDIR:-/tmp}/corral-agent-build.$$.log" >&2; rm -f "${TMPDIR:-/tmp}/corral-agent-build.$$.log"; exit 1; }
rm -f "${TMPDIR:-/tmp}/corral-agent-build.$$.log"
echo "build-agent-image: $tag built in $(elapsed)"
