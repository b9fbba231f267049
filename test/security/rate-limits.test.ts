import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { LimitExceededSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import { createKeyedRateLimiter } from "@corral/plumbing/keyed-rate-limiter.ts";
import { auth, SERVICE_TOKEN, startArtifactFixture, type ArtifactFixture } from "../artifact/support.ts";
import { openAttach } from "../support/attach-client.ts";
import { startControlPlaneFixture, type ControlPlaneFixture } from "../support/control-plane.ts";
import { seedLaunchedRun } from "../support/seed-run.ts";

/** The call's RESOURCE_EXHAUSTED, with its LimitExceeded detail; fails on any other outcome. */
function limitOf(error: unknown, limit: string) {
  assert.ok(error instanceof ConnectError, `expected a refusal, got ${String(error)}`);
  assert.equal(error.code, Code.ResourceExhausted, error.message);
  const detail = error.findDetails(LimitExceededSchema)[0];
  assert.equal(detail?.limit, limit);
  const retryMs = Number(detail!.retryAfter!.seconds) * 1000 + detail!.retryAfter!.nanos / 1e6;
  assert.ok(retryMs > 0 && retryMs <= 60_000, `retry after ${retryMs}ms`);
  assert.match(error.rawMessage, /retry in \d+s/);
  return { detail: detail!, retryMs };
}

describe("keyed rate limiter", () => {
  it("lets `perMinute` calls through at once per key, then one more per refilled share, with the wait until then", () => {
    let now = 0;
    const limiter = createKeyedRateLimiter({ perMinute: 3, now: () => now });
    for (let i = 0; i < 3; i++) assert.equal(limiter.take("a").ok, true);
    const refused = limiter.take("a");
    assert.deepEqual(refused, { ok: false, retryAfterMs: 20_000 });
    assert.equal(limiter.take("b").ok, true, "another key has its own bucket");
    now = 19_999;
    assert.equal(limiter.take("a").ok, false);
    now = 40_000;
    assert.equal(limiter.take("a").ok, true);
  });

  it("keeps at most maxKeys buckets, dropping the least recently used", () => {
    let now = 0;
    const limiter = createKeyedRateLimiter({ perMinute: 1, maxKeys: 2, now: () => now });
    limiter.take("a");
    limiter.take("b");
    assert.equal(limiter.take("a").ok, false, "a is still limited and now the most recent");
    limiter.take("c"); // drops b, the least recent
    assert.equal(limiter.take("b").ok, true, "b came back with a full bucket");
    assert.equal(limiter.take("c").ok, false);
    now = 0;
  });
});

describe("per-credential rate limits on a real control plane and artifact service", function () {
  this.timeout(60_000);

  describe("attach attempts", () => {
    let fx: ControlPlaneFixture;
    before(async () => {
      fx = await startControlPlaneFixture({ CORRAL_ATTACH_ATTEMPTS_PER_MINUTE: "3" });
    });
    after(() => fx?.close());

    const attemptEnd = async (runId: string, credential: string) => {
      const stream = openAttach(fx.url);
      stream.hello(runId, 1, credential);
      stream.close();
      return stream.ended();
    };

    it("refuses the fourth attempt a minute with one credential with RESOURCE_EXHAUSTED and a retry hint; other credentials attach", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const guess = mintCredential().token;
      for (let i = 0; i < 3; i++) assert.equal((await attemptEnd(run.runId, guess))?.code, Code.Unauthenticated);
      const { detail } = limitOf(await attemptEnd(run.runId, guess), "attach_attempts_per_minute");
      assert.equal(detail.maximum, 3n);
      // The limit is per credential and says nothing about the run: the same for a run that does not exist.
      limitOf(await attemptEnd("6f1c5f6e-0000-4000-8000-000000000000", guess), "attach_attempts_per_minute");
      const agent = openAttach(fx.url);
      agent.hello(run.runId, 1, run.token);
      await agent.next("welcome");
      agent.close();
      await agent.ended();
    });
  });

  describe("artifact calls", () => {
    let fx: ArtifactFixture;
    before(async () => {
      fx = await startArtifactFixture({ CORRAL_ARTIFACT_CALLS_PER_MINUTE: "5" });
    });
    after(() => fx?.close());

    it("refuses the sixth call a minute with one credential; the service token and other credentials are not held back", async () => {
      const run = await seedLaunchedRun(fx.sql);
      const other = await seedLaunchedRun(fx.sql);
      const call = (token: string, runId = run.runId) => fx.client.list({ runId }, auth(token)).then(() => undefined, (e: unknown) => e);
      for (let i = 0; i < 5; i++) assert.equal(await call(run.token), undefined);
      limitOf(await call(run.token), "artifact_calls_per_minute");
      assert.equal(await call(other.token, other.runId), undefined);
      for (let i = 0; i < 10; i++) assert.equal(await call(SERVICE_TOKEN), undefined);
      // A guessed credential is limited too, before it is looked up.
      const guess = mintCredential().token;
      for (let i = 0; i < 5; i++) assert.equal((await call(guess) as ConnectError).code, Code.Unauthenticated);
      limitOf(await call(guess), "artifact_calls_per_minute");
    });
  });
});
