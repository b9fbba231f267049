# syntax=docker/dockerfile:1
#
# The runner agent: the image a run's sandbox (Docker container or Kubernetes Job) starts.
# Built from the repository root:
#
#   docker build -f deploy/docker/agent.Dockerfile -t corral-agent .
#
# Node 24 runs the TypeScript sources directly; git is there for the run's checkout. The
# build context is filtered by agent.Dockerfile.dockerignore.

# Pinned to the Node release the repository pins as its `node` devDependency (package.json);
# bump both together, and with service.Dockerfile.
ARG NODE_VERSION=24.21.0
# The image every stage starts from. Where no container registry can be reached,
# deploy/docker/build-agent-image.sh builds a Debian root filesystem with the same Node, npm,
# git, CA certificates and tini, imports it, and names it here (--build-arg BASE_IMAGE=...).
ARG BASE_IMAGE=node:${NODE_VERSION}-bookworm-slim

FROM ${BASE_IMAGE} AS base
ENV NODE_ENV=production
WORKDIR /app

# `npm ci` checks the lock file against every workspace, so all manifests are copied.
FROM base AS deps
COPY package.json package-lock.json .npmrc ./
COPY proto/package.json proto/
COPY plumbing/package.json plumbing/
COPY services/scheduler/package.json services/scheduler/
COPY services/control-plane/package.json services/control-plane/
COPY services/artifact/package.json services/artifact/
COPY services/web/package.json services/web/
COPY agent/package.json agent/
COPY cli/package.json cli/
COPY deploy/package.json deploy/
# Production dependencies of the agent and the workspaces it links (plumbing, contract);
# no root devDependencies (the `node` one would download a second Node), no embedded
# PostgreSQL binaries (optional), no install scripts. A registry behind a TLS-inspecting proxy
# needs its CA: pass a bundle as the optional build secret "ca-certificates" (Node does not
# read the system store by itself); it never enters a layer.
RUN --mount=type=cache,id=corral-npm,target=/root/.npm \
    --mount=type=secret,id=ca-certificates,required=false \
    if [ -s /run/secrets/ca-certificates ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca-certificates; fi \
 && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --workspace=agent

FROM base AS agent
# git (with CA certificates for https remotes, ssh for ssh remotes) for the checkout; tini as
# PID 1, because the agent starts pipeline steps as child processes and something must
# reap the orphans they leave and forward signals (SIGTERM drains the agent). A base that
# already has them (build-agent-image.sh's, which has no package source to reach) skips apt.
RUN if ! { [ -x /usr/bin/tini ] && command -v git && command -v ssh && [ -s /etc/ssl/certs/ca-certificates.crt ]; } >/dev/null; then \
      apt-get update \
   && apt-get install --yes --no-install-recommends ca-certificates git openssh-client tini \
   && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 corral \
 && useradd --system --uid 10001 --gid corral --create-home --home-dir /home/corral --shell /usr/sbin/nologin corral \
 && install --directory --owner=10001 --group=10001 --mode=0750 /workspace \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg
# Sources and dependencies are owned by root: read-only to the agent.
COPY --from=deps /app /app
COPY proto/gen proto/gen
COPY plumbing/src plumbing/src
# The whole workspace directory (filtered by the ignore file), so the image builds before
# agent/src has its first file.
COPY agent/ agent/
ENV HOME=/home/corral
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "agent/src/main.ts"]
