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

FROM node:${NODE_VERSION}-bookworm-slim AS base
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
# PostgreSQL binaries (optional), no install scripts.
RUN --mount=type=cache,id=corral-npm,target=/root/.npm \
    npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --workspace=agent

FROM base AS agent
# git (with CA certificates for https remotes, ssh for ssh remotes) for the checkout; tini as
# PID 1, because the agent starts pipeline steps as child processes and something must
# reap the orphans they leave and forward signals (SIGTERM drains the agent).
RUN apt-get update \
 && apt-get install --yes --no-install-recommends ca-certificates git openssh-client tini \
 && rm -rf /var/lib/apt/lists/* \
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
