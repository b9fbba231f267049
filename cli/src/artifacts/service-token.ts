import { randomBytes } from "node:crypto";
import { chmod, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** The file under CORRAL_HOME where `corral up` keeps the artifact service token of its stack. */
export const SERVICE_TOKEN_FILE = "artifact-service-token";

/** The artifact service's own minimum (CORRAL_ARTIFACT_SERVICE_TOKEN). */
const MIN_LENGTH = 32;

/**
 * The stack's artifact service token: the one in `home` if there is a good one, else a new one
 * (256 random bits), written atomically. The file is the owner's alone (0600), repaired if not:
 * the token reads every run's artifacts.
 */
export async function ensureServiceToken(home: string): Promise<string> {
  const path = join(home, SERVICE_TOKEN_FILE);
  const existing = await readTokenFile(path);
  if (existing !== undefined && existing.length >= MIN_LENGTH) {
    await chmod(path, 0o600);
    return existing;
  }
  const token = randomBytes(32).toString("base64url");
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temp, `${token}\n`, { mode: 0o600, flag: "w" });
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return token;
}

/**
 * The token the CLI reads artifacts with: CORRAL_ARTIFACT_SERVICE_TOKEN, else the file `corral up`
 * wrote under CORRAL_HOME (default .corral). Says where it came from, for error messages; never
 * the token itself.
 */
export async function findServiceToken(env: NodeJS.ProcessEnv): Promise<{ token: string; source: string } | { token: undefined; looked: string }> {
  if (env.CORRAL_ARTIFACT_SERVICE_TOKEN) return { token: env.CORRAL_ARTIFACT_SERVICE_TOKEN, source: "CORRAL_ARTIFACT_SERVICE_TOKEN" };
  const path = join(env.CORRAL_HOME || ".corral", SERVICE_TOKEN_FILE);
  const token = await readTokenFile(path);
  return token ? { token, source: path } : { token: undefined, looked: path };
}

async function readTokenFile(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim() || undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
