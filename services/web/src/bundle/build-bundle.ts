import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: esbuild resolves the UI's imports (contract, preact) from here. */
export const REPOSITORY_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
/** The dashboard's sources. */
export const UI_DIR = join(REPOSITORY_ROOT, "services/web/ui");
/** Where the bundle is built; git-ignored. */
export const BUNDLE_DIR = join(REPOSITORY_ROOT, "services/web/dist/bundle");

/** Bumped when the way the bundle is made changes, so an older bundle counts as stale. */
const BUILDER_VERSION = 1;
const STAMP = "bundle.json";

export interface BundleOptions {
  root?: string;
  uiDir?: string;
  outDir?: string;
}

/** What a bundle was made from: every input file (relative to the root) and its sha256. */
interface Stamp {
  builderVersion: number;
  inputs: Record<string, string>;
  /** The files the server serves, relative to the bundle directory. */
  files: string[];
}

/**
 * The bundle, built only when it is missing or stale: when any file it was made from changed
 * (its sources, the contract, a dependency). So a fresh clone's `npm start` just works, and an
 * image built with its bundle (deploy/docker) starts without building.
 */
export async function ensureBundle(options: BundleOptions = {}): Promise<{ dir: string; built: boolean }> {
  const root = options.root ?? REPOSITORY_ROOT;
  const outDir = options.outDir ?? BUNDLE_DIR;
  if (await isFresh(root, outDir)) return { dir: outDir, built: false };
  await buildBundle(options);
  return { dir: outDir, built: true };
}

/** Whether the bundle in outDir was built, by this builder, from the files as they are now. */
export async function isFresh(root: string, outDir: string): Promise<boolean> {
  const stamp = await readStamp(outDir);
  if (!stamp || stamp.builderVersion !== BUILDER_VERSION) return false;
  for (const [path, digest] of Object.entries(stamp.inputs)) {
    const now = await sha256File(join(root, path)).catch(() => undefined);
    if (now !== digest) return false;
  }
  return true;
}

/**
 * Builds the UI with esbuild into a new directory beside outDir, then swaps it in, so a server
 * reading outDir never sees half a bundle and two builders at once do not mix their files.
 */
export async function buildBundle(options: BundleOptions = {}): Promise<void> {
  const root = resolve(options.root ?? REPOSITORY_ROOT);
  const uiDir = resolve(options.uiDir ?? UI_DIR);
  const outDir = resolve(options.outDir ?? BUNDLE_DIR);
  // Loaded only to build: an image whose bundle is fresh never needs esbuild's binary.
  const esbuild = await import("esbuild").catch((error: unknown) => {
    throw new Error(`the dashboard bundle in ${outDir} is missing or stale, and esbuild, which builds it, cannot be loaded (${(error as Error).message})`);
  });
  const staging = join(outDir, "..", `.${basename(outDir)}-${process.pid}-${randomBytes(4).toString("hex")}`);
  activeBuilds++;
  try {
    const result = await esbuild.build({
      absWorkingDir: root,
      entryPoints: { app: join(uiDir, "main.tsx") },
      outdir: join(staging, "assets"),
      entryNames: "[name]-[hash]",
      bundle: true,
      format: "esm",
      platform: "browser",
      target: ["chrome115", "firefox115", "safari16"],
      jsx: "automatic",
      jsxImportSource: "preact",
      minify: true,
      sourcemap: "linked",
      metafile: true,
      legalComments: "linked",
      logLevel: "silent",
      write: true,
    });
    const outputs = Object.keys(result.metafile.outputs).map((path) => relative(staging, resolve(root, path)));
    const script = outputs.find((p) => /^assets\/app-[^/]+\.js$/.test(p));
    const style = outputs.find((p) => /^assets\/app-[^/]+\.css$/.test(p));
    if (!script || !style) throw new Error(`esbuild produced no app script or style sheet (${outputs.join(", ")})`);

    const template = join(uiDir, "index.html");
    const html = (await readFile(template, "utf8")).replace("%APP_JS%", `/${script}`).replace("%APP_CSS%", `/${style}`);
    await writeFile(join(staging, "index.html"), html);

    const inputs: Record<string, string> = {};
    for (const path of [...Object.keys(result.metafile.inputs).map((p) => resolve(root, p)), template, fileURLToPath(import.meta.url)]) {
      inputs[relative(root, path)] = await sha256File(path);
    }
    const stamp: Stamp = { builderVersion: BUILDER_VERSION, inputs, files: ["index.html", ...outputs] };
    await writeFile(join(staging, STAMP), JSON.stringify(stamp, null, 1));
    await swapIn(staging, outDir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  } finally {
    // esbuild keeps a service process after a build, which keeps this process alive (a test
    // run that never exits); the last build in flight stops it, and the next starts it again.
    if (--activeBuilds === 0) await esbuild.stop();
  }
}

let activeBuilds = 0;

/** The files a built bundle serves (paths relative to its directory). */
export async function bundleFiles(outDir: string): Promise<string[]> {
  const stamp = await readStamp(outDir);
  if (!stamp) throw new Error(`no dashboard bundle in ${outDir}`);
  return stamp.files;
}

async function swapIn(staging: string, outDir: string): Promise<void> {
  await mkdir(join(outDir, ".."), { recursive: true });
  const old = `${staging}-old`;
  await rename(outDir, old).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
  try {
    await rename(staging, outDir);
  } catch (error) {
    // Another builder swapped its bundle in between: it was built from the same files.
    if ((error as NodeJS.ErrnoException).code !== "ENOTEMPTY" && (error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    await rm(staging, { recursive: true, force: true });
  }
  await rm(old, { recursive: true, force: true });
}

async function readStamp(outDir: string): Promise<Stamp | undefined> {
  try {
    return JSON.parse(await readFile(join(outDir, STAMP), "utf8")) as Stamp;
  } catch {
    return undefined;
  }
}

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}
