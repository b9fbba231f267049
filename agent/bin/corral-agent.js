#!/usr/bin/env node
import { runOnNode24 } from "@corral/plumbing/run-on-node-24.js";

await runOnNode24(new URL("../src/main.ts", import.meta.url).href);
