import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it); CORRAL_CHROMIUM names another. */
export const CHROMIUM = process.env.CORRAL_CHROMIUM ?? "/usr/bin/chromium";

/** Where the browser tests leave screenshots (git-ignored). */
export const TEST_ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));

export const chromiumMissing = (): string | undefined =>
  existsSync(CHROMIUM) ? undefined : `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium, or set CORRAL_CHROMIUM)`;

/** Headless Chromium; as root it needs --no-sandbox (the sandbox refuses to run as root). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
}

export async function screenshotPath(name: string): Promise<string> {
  const dir = join(TEST_ARTIFACTS, "web");
  await mkdir(dir, { recursive: true });
  return join(dir, name);
}
