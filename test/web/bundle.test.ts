import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildBundle, ensureBundle, isFresh, REPOSITORY_ROOT, UI_DIR } from "@corral/web/bundle/build-bundle.ts";

describe("web service: the UI bundle, built when missing or stale", function () {
  this.timeout(60_000);
  // Inside the repository, so the copy's imports (preact, the contract) resolve as the real UI's do.
  let work: string;
  let ui: string;
  let out: string;
  before(async () => {
    work = await mkdtemp(join(REPOSITORY_ROOT, "services/web/.bundle-test-"));
    ui = join(work, "ui");
    out = join(work, "dist/bundle");
    await cp(UI_DIR, ui, { recursive: true });
  });
  after(() => rm(work, { recursive: true, force: true }));

  it("builds a missing bundle: the page, its hashed script and style sheet, and what it was made from", async () => {
    assert.deepEqual(await ensureBundle({ uiDir: ui, outDir: out }), { dir: out, built: true });
    const html = await readFile(join(out, "index.html"), "utf8");
    const [, script] = /src="\/(assets\/app-[A-Z0-9]+\.js)"/.exec(html) ?? [];
    const [, style] = /href="\/(assets\/app-[A-Z0-9]+\.css)"/.exec(html) ?? [];
    assert.ok(script && style, html);
    assert.ok((await readdir(join(out, "assets"))).includes(script.slice("assets/".length)));
    const stamp = JSON.parse(await readFile(join(out, "bundle.json"), "utf8")) as { inputs: Record<string, string>; files: string[] };
    const inputs = Object.keys(stamp.inputs);
    for (const expected of [/ui\/main\.tsx$/, /ui\/index\.html$/, /proto\/gen\/corral\/scheduler\/v1\/run_service_pb\.ts$/, /node_modules\/preact\//, /services\/web\/src\/bundle\/build-bundle\.ts$/]) {
      assert.ok(inputs.some((p) => expected.test(p)), `no input matching ${expected}`);
    }
    assert.ok(stamp.files.includes("index.html") && stamp.files.includes(script));
  });

  it("leaves a fresh bundle alone", async () => {
    assert.equal(await isFresh(REPOSITORY_ROOT, out), true);
    assert.deepEqual(await ensureBundle({ uiDir: ui, outDir: out }), { dir: out, built: false });
  });

  it("rebuilds when a source it was made from changes, with the change in it", async () => {
    const app = join(ui, "app.tsx");
    await writeFile(app, (await readFile(app, "utf8")).replace('label: "Runtimes"', 'label: "Runtimes (changed)"'));
    assert.equal(await isFresh(REPOSITORY_ROOT, out), false);
    assert.equal((await ensureBundle({ uiDir: ui, outDir: out })).built, true);
    const html = await readFile(join(out, "index.html"), "utf8");
    const script = /src="\/(assets\/[^"]+)"/.exec(html)![1]!;
    assert.match(await readFile(join(out, script), "utf8"), /Runtimes \(changed\)/);
    assert.equal(await isFresh(REPOSITORY_ROOT, out), true);
  });

  it("counts a bundle stale when an input is gone or the stamp is damaged", async () => {
    const stampFile = join(out, "bundle.json");
    const stamp = JSON.parse(await readFile(stampFile, "utf8")) as { inputs: Record<string, string> };
    await writeFile(stampFile, JSON.stringify({ ...stamp, inputs: { ...stamp.inputs, "services/web/ui/gone.ts": "00" } }));
    assert.equal(await isFresh(REPOSITORY_ROOT, out), false);
    await writeFile(stampFile, "{ not json");
    assert.equal(await isFresh(REPOSITORY_ROOT, out), false);
  });

  it("lets two builders race without mixing their files", async () => {
    await Promise.all([buildBundle({ uiDir: ui, outDir: out }), buildBundle({ uiDir: ui, outDir: out })]);
    assert.equal(await isFresh(REPOSITORY_ROOT, out), true);
    const html = await readFile(join(out, "index.html"), "utf8");
    const script = /src="\/(assets\/[^"]+)"/.exec(html)![1]!;
    await readFile(join(out, script)); // the page's script is there
    assert.deepEqual((await readdir(join(work, "dist"))).filter((n) => n !== "bundle"), [], "no staging directories left behind");
  });

  it("fails with esbuild's message on a source that does not compile, and keeps the old bundle", async () => {
    const before = await readFile(join(out, "index.html"), "utf8");
    await writeFile(join(ui, "broken.ts"), "export const x = ;\n");
    await writeFile(join(ui, "main.tsx"), `import "./broken.ts";\n${await readFile(join(ui, "main.tsx"), "utf8")}`);
    await assert.rejects(buildBundle({ uiDir: ui, outDir: out }), /Unexpected ";"/);
    assert.equal(await readFile(join(out, "index.html"), "utf8"), before);
    assert.deepEqual((await readdir(join(work, "dist"))).filter((n) => n !== "bundle"), []);
  });
});
