import { loadConfig } from "@corral/plumbing/config.ts";
import { createLogger } from "@corral/plumbing/logger.ts";
import { createSql, type Sql } from "@corral/plumbing/db/sql.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { startControlPlane, type ControlPlane } from "@corral/control-plane/start-control-plane.ts";
import { startArtifactService, type ArtifactServiceFixture } from "./artifact-service.ts";
import { createTestDatabase, type TestDatabase } from "./postgres.ts";

export interface ControlPlaneFixture {
  database: TestDatabase;
  controlPlane: ControlPlane;
  /** The artifact service whose URL the control plane hands out; absent when env named one. */
  artifacts: ArtifactServiceFixture | undefined;
  sql: Sql;
  url: string;
  close(): Promise<void>;
}

/**
 * A real control plane on a free port with its own fresh database, and a real artifact service
 * on the same database for the agents it assigns (unless env sets CORRAL_ARTIFACT_URL).
 */
export async function startControlPlaneFixture(env: Record<string, string> = {}): Promise<ControlPlaneFixture> {
  const database = await createTestDatabase();
  const artifacts = env.CORRAL_ARTIFACT_URL === undefined ? await startArtifactService(database.url) : undefined;
  const config = loadConfig(controlPlaneConfig, {
    DATABASE_URL: database.url,
    CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
    ...(artifacts ? { CORRAL_ARTIFACT_URL: artifacts.url } : {}),
    ...env,
  });
  const controlPlane = await startControlPlane(config, createLogger({ name: "control-plane", level: process.env.TEST_LOG_LEVEL ?? "silent" }));
  return {
    database,
    controlPlane,
    artifacts,
    sql: createSql(controlPlane.database.orm),
    url: controlPlane.server.url,
    async close() {
      await controlPlane.close(1000);
      await artifacts?.close();
      await database.drop();
    },
  };
}
