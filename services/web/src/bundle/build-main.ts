import { buildBundle, BUNDLE_DIR } from "./build-bundle.ts";

// `npm run build:web`: builds the dashboard bundle whatever its state (the image build and CI
// use it; the web service itself builds only a missing or stale bundle).
const started = Date.now();
await buildBundle();
process.stdout.write(`dashboard bundle built in ${BUNDLE_DIR} (${Date.now() - started} ms)\n`);
