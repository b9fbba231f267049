#!/usr/bin/env node
// The runner agent runs on Node 24 (it relies on native TypeScript type stripping). When
// started by an older Node, re-run it on the Node 24 that the project installs as a
// dependency. stdin is inherited, so the credential written there still reaches the agent.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

const major = Number(process.versions.node.split(".")[0]);
if (major >= 24) {
  await import("../src/main.ts");
} else {
  const node24 = createRequire(import.meta.url).resolve("node/bin/node");
  const result = spawnSync(node24, [new URL("../src/main.ts", import.meta.url).pathname, ...process.argv.slice(2)], {
    stdio: "inherit",
  });
  process.exit(result.status ?? 1);
}
