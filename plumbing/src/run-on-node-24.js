// Corral runs on Node 24: it relies on native TypeScript type stripping. A bin started by an
// older Node re-runs its entry point on the Node 24 that the project installs as a dependency
// (the npm package `node`). Plain JavaScript, so that an older Node can load it. stdio is
// inherited, so a credential written to the agent's stdin still reaches it.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** @param {string} entryUrl the TypeScript entry point, as a file: URL */
export async function runOnNode24(entryUrl) {
  if (Number(process.versions.node.split(".")[0]) >= 24) {
    await import(entryUrl);
    return;
  }
  const node24 = createRequire(import.meta.url).resolve("node/bin/node");
  const result = spawnSync(node24, [fileURLToPath(entryUrl), ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(result.status ?? 1);
}
