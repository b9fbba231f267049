import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Runtime } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { RuntimeBackend } from "@corral/scheduler/runtime/runtime-backend.ts";
import { createRuntimeStatus } from "@corral/scheduler/runtime/runtime-status.ts";
import { startSchedulerFixture, type SchedulerFixture } from "../support/scheduler.ts";

/** A backend whose preflight answers as told and counts its calls; only preflight is used here. */
function backend(name: "local" | "docker" | "kubernetes", answer: (signal: AbortSignal) => Promise<{ ok: boolean; message: string }>) {
  const calls = { count: 0 };
  const value = {
    name,
    preflight: (signal?: AbortSignal) => {
      calls.count++;
      return answer(signal!);
    },
  } as unknown as RuntimeBackend;
  return { value, calls };
}

describe("ListRuntimes", () => {
  describe("the runtime status (preflight cache)", () => {
    it("lists every known runtime in enum order, enabled or not, with the default marked", async () => {
      const local = backend("local", async () => ({ ok: true, message: "local runtime ready" }));
      const status = createRuntimeStatus({ enabled: ["local"], defaultRuntime: "local", backends: new Map([["local", local.value]]), now: () => 1_700_000_000_000 });
      const infos = await status.list();
      assert.deepEqual(
        infos.map((i) => [i.runtime, i.name, i.enabled, i.isDefault, i.ok]),
        [
          [Runtime.LOCAL, "local", true, true, true],
          [Runtime.DOCKER, "docker", false, false, false],
          [Runtime.KUBERNETES, "kubernetes", false, false, false],
        ],
      );
      assert.equal(infos[0]!.message, "local runtime ready");
      assert.match(infos[1]!.message!, /not enabled.*CORRAL_RUNTIMES/);
      assert.equal(infos[1]!.checkedAt, undefined, "nothing was checked for a runtime that is not enabled");
      assert.equal(timestampMs(infos[0]!.checkedAt as never), 1_700_000_000_000);
    });

    it("answers from one round of checks for ttlMs, shared by concurrent callers, then checks again", async () => {
      let clock = 0;
      const local = backend("local", () => new Promise((resolve) => setTimeout(() => resolve({ ok: true, message: `checked at ${clock}` }), 20)));
      const status = createRuntimeStatus({ enabled: ["local"], defaultRuntime: "local", backends: new Map([["local", local.value]]), ttlMs: 5000, now: () => clock });
      const [a, b] = await Promise.all([status.list(), status.list()]);
      assert.equal(local.calls.count, 1, "two callers at once share one preflight");
      assert.deepEqual(a, b);
      clock = 4999;
      assert.equal((await status.list())[0]!.message, "checked at 0");
      assert.equal(local.calls.count, 1, "within the ttl: no new check");
      clock = 5000;
      assert.equal((await status.list())[0]!.message, "checked at 5000");
      assert.equal(local.calls.count, 2, "after the ttl: checked again");
    });

    it("reports a preflight that throws, or does not answer in time, as failed, saying which", async () => {
      const kubernetes = backend("kubernetes", async () => {
        throw new Error("connect ECONNREFUSED 127.0.0.1:6443");
      });
      const local = backend("local", (signal) => new Promise((_, reject) => signal.addEventListener("abort", () => reject(new Error("aborted")))));
      const status = createRuntimeStatus({
        enabled: ["local", "kubernetes"],
        defaultRuntime: "kubernetes",
        backends: new Map([["local", local.value], ["kubernetes", kubernetes.value]]),
        timeoutMs: 50,
      });
      const [l, , k] = await status.list();
      assert.equal(l!.ok, false);
      assert.match(l!.message!, /did not answer within/);
      assert.equal(k!.ok, false);
      assert.equal(k!.isDefault, true);
      assert.equal(k!.message, "the preflight check failed: connect ECONNREFUSED 127.0.0.1:6443");
    });

    it("says an enabled runtime that is not started yet is starting, and does not keep that answer", async () => {
      const backends = new Map<string, RuntimeBackend>();
      const status = createRuntimeStatus({ enabled: ["local"], defaultRuntime: "local", backends, ttlMs: 60_000 });
      const [early] = await status.list();
      assert.equal(early!.ok, false);
      assert.match(early!.message!, /starting/);
      backends.set("local", backend("local", async () => ({ ok: true, message: "ready" })).value);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal((await status.list())[0]!.message, "ready", "checked again at once, not after the ttl");
    });

    it("ends a caller's wait when its signal aborts, without cancelling the shared check", async () => {
      let finish: (v: { ok: boolean; message: string }) => void = () => {};
      const local = backend("local", () => new Promise((resolve) => (finish = resolve)));
      const status = createRuntimeStatus({ enabled: ["local"], defaultRuntime: "local", backends: new Map([["local", local.value]]) });
      const impatient = new AbortController();
      const first = status.list(impatient.signal);
      const second = status.list();
      impatient.abort(new Error("gone"));
      await assert.rejects(first, /gone/);
      finish({ ok: true, message: "fine" });
      assert.equal((await second)[0]!.message, "fine");
      assert.equal(local.calls.count, 1);
    });
  });

  describe("on a real scheduler", () => {
    let fixture: SchedulerFixture;
    let workRoot: string;
    before(async () => {
      workRoot = await mkdtemp(join(tmpdir(), "corral-list-runtimes-"));
      fixture = await startSchedulerFixture({ CORRAL_WORK_ROOT: workRoot, CORRAL_LOCAL_WARM_AGENTS: "0" });
    });
    after(async () => {
      await fixture?.close();
      await rm(workRoot, { recursive: true, force: true });
    });

    it("reports the local runtime's real preflight, and the others as not enabled", async () => {
      const { runtimes } = await fixture.client.listRuntimes({});
      assert.deepEqual(runtimes.map((r) => [r.name, r.enabled, r.isDefault, r.ok]), [
        ["local", true, true, true],
        ["docker", false, false, false],
        ["kubernetes", false, false, false],
      ]);
      assert.ok(runtimes[0]!.message.length > 0, "the local preflight says something");
      assert.ok(runtimes[0]!.checkedAt, "when it was checked");
    });
  });
});
