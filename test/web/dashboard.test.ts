import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { RunStatus, type SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { WebServer } from "@corral/web/start-web.ts";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { createSeededRemote, remoteBranch, useTempDirs } from "../agent/support/git-fixtures.ts";
import { ARTIFACT_SERVICE_TOKEN } from "../support/artifact-service.ts";
import { chromiumMissing, launchChromium, screenshotPath } from "../support/browser.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";
import { startWebFixture } from "../support/web.ts";

// The functions handed to page.evaluate and page.waitForFunction run in the browser, where these
// exist; the test program is typed for Node, so they are declared here, for this file only.
interface PageElement {
  textContent: string | null;
  id: string;
  tagName: string;
  getAttribute(name: string): string | null;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
  activeElement: PageElement | null;
  body: unknown;
};
declare const window: unknown;
declare function getComputedStyle(element: PageElement): { outlineStyle: string };
declare class MutationObserver {
  constructor(callback: () => void);
  observe(target: unknown, options: Record<string, unknown>): void;
}

const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

/**
 * The dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core)
 * against a real stack: PostgreSQL, the scheduler, control plane and artifact service, real
 * agents on the local runtime, real git repositories, and the web service in front.
 */
describe("dashboard in Chromium", function () {
  this.timeout(180_000);
  let stack: StackFixture;
  let web: WebServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Requests the page made to any other origin: there must be none. */
  let foreign: string[];
  const tempDir = useTempDirs();

  before(async function () {
    const missing = chromiumMissing();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    stack = await startStackFixture({}, { agentEnv: { CORRAL_RUN_LOG_FLUSH_INTERVAL: "300ms" } });
    web = await startWebFixture({ schedulerUrl: stack.scheduler.server.url, artifactUrl: stack.artifacts!.url, token: ARTIFACT_SERVICE_TOKEN });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await web?.close(100);
    await stack?.close();
  });
  beforeEach(async () => {
    foreign = [];
    // A laptop screen.
    context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
    page = await context.newPage();
    page.on("request", (request) => {
      if (!request.url().startsWith(web.server.url) && !request.url().startsWith("data:")) foreign.push(request.url());
    });
    page.on("pageerror", (error) => console.log(`      page error: ${error.message}`));
  });
  afterEach(async () => {
    await context?.close();
    assert.deepEqual(foreign, [], "the page asked another origin for something");
  });

  const url = (path: string) => `${web.server.url}${path}`;

  async function remote() {
    return createSeededRemote(await tempDir("dashboard"));
  }

  async function submit(repositoryUrl: string, commandTemplate: string) {
    const spec = { repositoryUrl, baseRef: "main", agent: { commandTemplate, prompt: "do it" } } as MessageInitShape<typeof SubmitRunRequestSchema>["spec"];
    return (await stack.client.submitRun({ spec })).run!;
  }

  async function settled(runId: string) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { run } = await stack.client.getRun({ runId });
      if (run && TERMINAL.includes(run.status)) return run;
      assert.ok(Date.now() < deadline, `run ${runId} did not end`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The status word in the run page's heading. */
  const headingStatus = () => page.locator("h1 .badge").textContent();
  async function waitForStatus(status: string, timeout = 60_000) {
    try {
      await page.waitForFunction((s) => document.querySelector("h1 .badge")?.textContent === s, status, { timeout });
    } catch (error) {
      const runId = page.url().split("/").pop()!;
      const run = /^[0-9a-f-]{36}$/.test(runId) ? (await stack.client.getRun({ runId })).run : undefined;
      throw new Error(`the page did not show "${status}" (it shows "${await headingStatus().catch(() => "?")}"; the run is ${run ? `status ${run.status}: ${run.reason}` : "?"}): ${(error as Error).message}`);
    }
  }

  let completedRunId: string | undefined;

  it("submits a run from the form and watches it complete live", async () => {
    const repo = await remote();
    await page.goto(url("/submit"));
    await page.getByLabel("Repository").fill(repo.url);
    await page.getByLabel("Base ref").fill("main");
    await page.getByLabel("Prompt").fill("Write the notes");
    await page.getByLabel("Agent command").fill("for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.4; done; cat {prompt_file} >> NOTES.md");
    await page.getByLabel("Runtime").selectOption("local");
    await page.getByRole("button", { name: "Submit run" }).click();

    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    const runId = page.url().split("/").pop()!;
    // Live: the log shows the agent's output while the page still says the run is running.
    await page.waitForFunction(
      () => document.querySelector("h1 .badge")?.textContent === "running" && /tick 2/.test(document.querySelector("pre.log")?.textContent ?? ""),
      undefined,
      { timeout: 30_000 },
    );
    assert.doesNotMatch((await page.locator("pre.log").textContent()) ?? "", /tick 8/, "the log was caught while the run was going");
    assert.equal(await page.locator('[data-phase="agent"]').getAttribute("data-state"), "current");
    assert.equal(await page.locator('[data-step="agent"]').getAttribute("data-outcome"), "running");

    await waitForStatus("completed");
    await page.waitForSelector('[data-log-state="finished"]', { timeout: 15_000 });
    const run = (await stack.client.getRun({ runId })).run!;
    assert.equal(run.status, RunStatus.COMPLETED, run.reason);
    assert.match((await page.locator("pre.log").textContent()) ?? "", /tick 1\n(.|\n)*tick 8\n/);
    assert.equal(await page.locator('[data-field="branch"]').textContent(), `corral/${runId}`);
    assert.equal(await page.locator('[data-field="commit"]').textContent(), run.result!.commitSha);
    assert.equal(remoteBranch(dirname(repo.bare), repo.bare, `corral/${runId}`), run.result!.commitSha, "the page shows the commit the branch points at");
    for (const phase of ["cloning", "agent", "pushing"]) assert.equal(await page.locator(`[data-phase="${phase}"]`).getAttribute("data-state"), "done", phase);
    assert.equal(await page.locator('[data-phase="validating"]').getAttribute("data-state"), "skipped");
    for (const step of ["clone", "agent", "commit", "push"]) assert.equal(await page.locator(`[data-step="${step}"]`).getAttribute("data-outcome"), "succeeded", step);
    assert.match((await page.locator('[data-step="agent"] td').nth(1).textContent()) ?? "", /^\d+(\.\d)? s$/, "the agent step shows its duration");
    assert.ok((await page.locator('[data-event="step.finished"]').count()) >= 4);
    assert.match((await page.locator(".final").textContent()) ?? "", /Run completed/);
    assert.equal(await page.getByRole("button", { name: "Cancel" }).isDisabled(), true);
    await page.waitForSelector('[data-artifact="attempts/1/change.diff"]');
    await page.screenshot({ path: await screenshotPath("run-page.png"), fullPage: true });
    completedRunId = runId;
  });

  it("downloads an artifact", async function () {
    if (!completedRunId) this.skip();
    await page.goto(url(`/runs/${completedRunId}`));
    const link = page.locator('[data-artifact="attempts/1/change.diff"] a');
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    assert.equal(download.suggestedFilename(), "change.diff");
    const saved = await readFile((await download.path())!);
    const expected: Buffer[] = [];
    for await (const m of stack.artifacts!.client.download({ runId: completedRunId, name: "attempts/1/change.diff" }, stack.artifacts!.auth)) expected.push(Buffer.from(m.data));
    assert.ok(saved.equals(Buffer.concat(expected)), "the saved file is the artifact, byte for byte");
    assert.match(saved.toString(), /\+Write the notes/);

    const [log] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download the whole log" }).click()]);
    assert.equal(log.suggestedFilename(), "run.log");
    assert.match((await readFile((await log.path())!)).toString(), /agent stdout \| tick 8/);
  });

  it("cancels a running run from its page, then retries it", async () => {
    const repo = await remote();
    const run = await submit(repo.url, "echo started; sleep 120");
    await page.goto(url(`/runs/${run.id}`));
    await page.waitForSelector('[data-step="agent"][data-outcome="running"]', { timeout: 30_000 });
    page.once("dialog", (dialog) => void dialog.accept());
    const asked = Date.now();
    await page.getByRole("button", { name: "Cancel" }).click();
    await waitForStatus("cancelled", 20_000);
    assert.ok(Date.now() - asked < 15_000, "cancelled within seconds");
    const final = (await page.locator(".final").textContent()) ?? "";
    assert.match(final, /Run cancelled/);
    assert.match(final, /cancelled from the dashboard/);
    assert.equal((await stack.client.getRun({ runId: run.id })).run!.cancelReason, "cancelled from the dashboard");
    assert.equal(await page.locator('[data-event="run.cancellation_observed"]').count(), 1, "the agent reported it saw the cancel");

    // Retry: a second attempt, followed on the same page.
    await page.getByRole("button", { name: "Retry" }).click();
    await page.waitForFunction(() => document.querySelector('[data-field="attempt"]')?.textContent === "2", undefined, { timeout: 10_000 });
    await waitForStatus("running", 30_000);
    assert.equal((await stack.client.getRun({ runId: run.id })).run!.attempt, 2);
    await stack.client.cancelRun({ runId: run.id, reason: "test over" });
    await waitForStatus("cancelled", 20_000);
  });

  it("shows the scheduler's validation errors next to their fields", async () => {
    const before = (await stack.client.listRuns({ pageSize: 500 })).runs.length;
    await page.goto(url("/submit"));
    await page.getByLabel("Repository").fill("not a url");
    await page.getByLabel("Agent command").fill("echo hi");
    await page.getByRole("button", { name: "Submit run" }).click();
    await page.waitForSelector("#repo-error");
    const repoError = (await page.locator("#repo-error").textContent()) ?? "";
    assert.ok(repoError.length > "Error: ".length, "the repository's error says something");
    assert.match((await page.locator("#prompt-error").textContent()) ?? "", /is required/);
    assert.equal(await page.locator("#command-error").count(), 0, "no error on a good field");
    assert.equal(await page.locator("#repo").getAttribute("aria-invalid"), "true");
    assert.match((await page.locator("#repo").getAttribute("aria-describedby")) ?? "", /\brepo-error\b/);
    assert.equal(await page.evaluate(() => document.activeElement?.id), "repo", "focus moves to the first field to fix");
    assert.match((await page.getByRole("alert").first().textContent()) ?? "", /refused the run/);
    assert.equal((await stack.client.listRuns({ pageSize: 500 })).runs.length, before, "no run was created");
    await page.screenshot({ path: await screenshotPath("submit-form-errors.png"), fullPage: true });
  });

  it("lists runs live, filtered by status, repository and runtime", async () => {
    await page.goto(url("/"));
    await page.waitForSelector("h1");
    const repo = await remote();
    const run = await submit(repo.url, "echo listed >> README.md");
    // Appears without a reload, then completes in place.
    await page.waitForSelector(`tr[data-run-id="${run.id}"]`, { timeout: 10_000 });
    await settled(run.id);
    await page.waitForFunction((id) => document.querySelector(`tr[data-run-id="${id}"] .badge`)?.textContent === "completed", run.id, { timeout: 10_000 });
    const row = page.locator(`tr[data-run-id="${run.id}"]`);
    assert.match((await row.textContent()) ?? "", new RegExp(`${repo.url.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}.*local`));
    await page.screenshot({ path: await screenshotPath("runs-list.png"), fullPage: true });

    await page.getByLabel("Status").selectOption("cancelled");
    await page.waitForURL(/\?status=cancelled$/);
    await page.waitForFunction(() => [...document.querySelectorAll("tr[data-run-id] .badge")].every((b) => b.textContent === "cancelled"));
    assert.equal(await page.locator(`tr[data-run-id="${run.id}"]`).count(), 0);

    await page.getByLabel("Status").selectOption("");
    await page.getByLabel("Repository").fill(repo.url);
    await page.getByLabel("Repository").press("Enter");
    await page
      .waitForFunction((id) => document.querySelectorAll("tr[data-run-id]").length === 1 && !!document.querySelector(`tr[data-run-id="${id}"]`), run.id, { timeout: 15_000 })
      .catch(async (error: Error) => {
        throw new Error(`${error.message}; at ${page.url()}: ${await page.locator("main").textContent()}`);
      });

    await page.getByLabel("Runtime").selectOption("kubernetes");
    await page.waitForSelector("text=No run matches these filters.");
    assert.match(page.url(), /runtime=kubernetes/);
    // The filters are in the address: a reload keeps them.
    await page.reload();
    assert.equal(await page.getByLabel("Runtime").inputValue(), "kubernetes");
  });

  it("shows each runtime and its preflight", async () => {
    await page.goto(url("/runtimes"));
    await page.waitForSelector('tr[data-runtime="local"]');
    const local = (await page.locator('tr[data-runtime="local"]').textContent()) ?? "";
    assert.match(local, /default/);
    assert.match(local, /passes/);
    assert.match((await page.locator('tr[data-runtime="kubernetes"]').textContent()) ?? "", /no.*not enabled/);
  });

  it("is usable from the keyboard alone, with the focus visible", async () => {
    await page.goto(url("/"));
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    // To the main navigation's "Submit a run", and follow it.
    for (let i = 0; i < 10 && (await page.evaluate(() => document.activeElement?.textContent)) !== "Submit a run"; i++) await page.keyboard.press("Tab");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    assert.notEqual(outline, "none", "the focused link shows where the focus is");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/submit$/);
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), "H1", "the new page's heading takes the focus");
    const repo = await remote();
    await page.keyboard.press("Tab");
    await page.keyboard.type(repo.url);
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await page.keyboard.type("Say hello");
    await page.keyboard.press("Tab");
    await page.keyboard.type("echo hello >> README.md");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await waitForStatus("completed");
    assert.equal(await headingStatus(), "completed");
  });

  it("resumes the run page after a scheduler restart and a web service restart, without losing or repeating an event", async () => {
    const repo = await remote();
    const run = await submit(repo.url, "for i in $(seq 1 60); do echo line $i; sleep 0.2; done; echo done >> README.md");
    await page.goto(url(`/runs/${run.id}`));
    // Record every connection state the page shows.
    await page.evaluate(() => {
      const seen: string[] = ((window as unknown as { states: string[] }).states = []);
      new MutationObserver(() => seen.push(document.querySelector(".connection")?.getAttribute("data-state") ?? "")).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
    });
    await page.waitForFunction(() => Number(document.querySelector("[data-events-received]")?.getAttribute("data-events-received")) >= 12, undefined, { timeout: 30_000 });
    await stack.restartScheduler();
    const afterScheduler = Number(await page.locator("[data-events-received]").getAttribute("data-events-received"));
    await page.waitForFunction((n) => Number(document.querySelector("[data-events-received]")?.getAttribute("data-events-received")) > n + 5, afterScheduler, { timeout: 30_000 });
    // The web service itself goes away and comes back on the same port: the page's streams break, and resume.
    const port = web.server.port;
    await web.close(100);
    web = await startWebFixture({ schedulerUrl: stack.scheduler.server.url, artifactUrl: stack.artifacts!.url, token: ARTIFACT_SERVICE_TOKEN, listen: `127.0.0.1:${port}` });
    await waitForStatus("completed");
    await page.waitForSelector('[data-log-state="finished"]', { timeout: 15_000 });

    const states = await page.evaluate(() => (window as unknown as { states: string[] }).states);
    assert.ok(states.includes("reconnecting"), `the page said it was reconnecting (${states.join(", ")})`);
    const counts = page.locator("[data-events-received]");
    const received = Number(await counts.getAttribute("data-events-received"));
    const last = Number(await counts.getAttribute("data-last-sequence"));
    assert.equal(Number(await counts.getAttribute("data-duplicates")), 0, "no event was received twice");
    assert.equal(received, last, "events 1 to the last, none missing");
    const stored = await stack.sql.one<{ n: string }>("select count(*) as n from events where run_id = ?", [run.id]);
    assert.equal(received, Number(stored!.n), "every stored event reached the page");
    const log = (await page.locator("pre.log").textContent()) ?? "";
    for (let i = 1; i <= 60; i++) assert.match(log, new RegExp(`\\| line ${i}\\n`));
  });
});
