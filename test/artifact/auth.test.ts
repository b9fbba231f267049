import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, type ConnectError } from "@connectrpc/connect";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { auth, bytes, chunk, download, eventually, expectCode, failure, header, SERVICE_TOKEN, startArtifactFixture, upload, wholeUpload, type ArtifactFixture } from "./support.ts";

describe("artifact service: authentication", () => {
  let fx: ArtifactFixture;
  let owner: SeededRun;
  let uploadId: string;
  const data = bytes(50_000, 21);

  before(async () => {
    fx = await startArtifactFixture();
    owner = await seedLaunchedRun(fx.sql);
    uploadId = randomUUID();
    await upload(fx.client, owner.token, wholeUpload({ uploadId, runId: owner.runId, name: "report.txt" }, data));
  });
  after(() => fx?.close());

  /** Every call of the service, for a given set of call options, against the owner's run. */
  const everyCall = (options: { headers?: Record<string, string> }): Record<string, () => Promise<unknown>> => ({
    upload: () => fx.client.upload(
      (async function* () {
        yield { message: header({ runId: owner.runId, name: `new-${randomUUID()}` }) } as never;
      })(),
      options,
    ),
    queryUpload: () => fx.client.queryUpload({ uploadId }, options),
    download: async () => {
      for await (const _ of fx.client.download({ runId: owner.runId, name: "report.txt" }, options));
    },
    stat: () => fx.client.stat({ runId: owner.runId, name: "report.txt" }, options),
    list: () => fx.client.list({ runId: owner.runId }, options),
  });

  /** Every call is refused UNAUTHENTICATED (QueryUpload names no run: `queryCode`), naming no run. */
  async function refusedEverywhere(options: { headers?: Record<string, string> }, what: string, queryCode: Code = Code.Unauthenticated): Promise<ConnectError[]> {
    const errors: ConnectError[] = [];
    for (const [name, call] of Object.entries(everyCall(options))) {
      const error = await failure(call());
      const expected = name === "queryUpload" ? queryCode : Code.Unauthenticated;
      assert.equal(error.code, expected, `${what}: ${name} answered ${Code[error.code]}: ${error.message}`);
      assert.ok(!error.message.includes(owner.runId), `${what}: ${name} names the run`);
      errors.push(error);
    }
    return errors;
  }

  it("refuses calls without a token, with a malformed one and with an unknown one, all alike", async () => {
    const messages = new Set<string>();
    for (const [what, headers] of [
      ["no header", {}],
      ["empty bearer", { authorization: "Bearer " }],
      ["basic auth", { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` }],
      ["garbage", { authorization: "Bearer not-a-credential" }],
      ["unknown credential", auth(mintCredential().token).headers],
      ["service token off by one", auth(SERVICE_TOKEN.slice(0, -1) + "X").headers],
    ] as const) {
      for (const error of await refusedEverywhere({ headers }, what)) if (error.code === Code.Unauthenticated) messages.add(error.rawMessage);
    }
    assert.equal(messages.size, 1, `every refusal says the same: ${[...messages].join(" | ")}`);
  });

  it("gives an attempt credential its own run only; another run looks exactly like a bad token", async () => {
    const other = await seedLaunchedRun(fx.sql);
    // Another run's upload is answered like an unknown one.
    const queryRefusal = (await refusedEverywhere(auth(other.token), "another run's credential", Code.NotFound))[1]!;
    const unknown = await expectCode(fx.client.queryUpload({ uploadId: randomUUID() }, auth(other.token)), Code.NotFound);
    assert.equal(queryRefusal.rawMessage, unknown.rawMessage);
    const bad = await expectCode(fx.client.stat({ runId: owner.runId, name: "report.txt" }, auth(mintCredential().token)), Code.Unauthenticated);
    const foreign = await expectCode(fx.client.stat({ runId: owner.runId, name: "report.txt" }, auth(other.token)), Code.Unauthenticated);
    assert.equal(foreign.rawMessage, bad.rawMessage);
    // The same credential reaches its own run.
    const own = await fx.client.stat({ runId: owner.runId, name: "report.txt" }, auth(owner.token));
    assert.equal(own.artifact?.complete, true);
  });

  it("refuses revoked and expired credentials, for reads as well as writes", async () => {
    const revoked = await seedLaunchedRun(fx.sql);
    await upload(fx.client, revoked.token, wholeUpload({ runId: revoked.runId, name: "log" }, data));
    await fx.sql.run("update credentials set revoked_at = now() where run_id = ?", [revoked.runId]);
    await expectCode(fx.client.stat({ runId: revoked.runId, name: "log" }, auth(revoked.token)), Code.Unauthenticated);
    await expectCode(download(fx.client, revoked.token, { runId: revoked.runId, name: "log" }), Code.Unauthenticated);
    await expectCode(upload(fx.client, revoked.token, wholeUpload({ runId: revoked.runId, name: "more" }, data)), Code.Unauthenticated);

    const expired = await seedLaunchedRun(fx.sql, { expiresInMs: -1000 });
    await expectCode(upload(fx.client, expired.token, wholeUpload({ runId: expired.runId, name: "log" }, data)), Code.Unauthenticated);
    await expectCode(fx.client.list({ runId: expired.runId }, auth(expired.token)), Code.Unauthenticated);
  });

  it("accepts only the current attempt's credential", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const second = mintCredential();
    await fx.sql.run("insert into attempts (run_id, number, status) values (?, 2, 'launching')", [run.runId]);
    await fx.sql.run("insert into credentials (run_id, attempt, token_hash, expires_at) values (?, 2, ?, now() + interval '1 hour')", [run.runId, second.hash]);
    await fx.sql.run("update runs set current_attempt = 2 where id = ?", [run.runId]);
    await expectCode(upload(fx.client, run.token, wholeUpload({ runId: run.runId, name: "a1" }, data)), Code.Unauthenticated);
    const response = await upload(fx.client, second.token, wholeUpload({ runId: run.runId, name: "a2" }, data));
    assert.equal(response.artifact?.attempt, 2);
  });

  it("ends an open upload stream whose credential is revoked, at its next commit", async () => {
    const run = await seedLaunchedRun(fx.sql);
    const id = randomUUID();
    let send: ((more: boolean) => void) | undefined;
    const call = upload(
      fx.client,
      run.token,
      (async function* () {
        yield header({ uploadId: id, runId: run.runId, name: "live.log" });
        for (let offset = 0; ; offset += 1000) {
          const more = await new Promise<boolean>((resolve) => (send = resolve));
          if (!more) return;
          yield chunk(offset, data.subarray(0, 1000));
        }
      })(),
    );
    call.catch(() => {});
    await eventually(async () => (send ? true : undefined), "the stream to start");
    send!(true);
    await eventually(async () => ((await fx.client.queryUpload({ uploadId: id }, auth(run.token)).catch(() => undefined))?.committedOffset === 1000n ? true : undefined), "the first chunk");
    await fx.sql.run("update credentials set revoked_at = now() where run_id = ?", [run.runId]);
    send!(true);
    await expectCode(call, Code.Unauthenticated);
    const query = await fx.client.queryUpload({ uploadId: id }, auth(SERVICE_TOKEN));
    assert.equal(query.committedOffset, 1000n, "nothing after the revocation is committed");
  });

  it("gives the service token every run, uploads recorded under the run's current attempt", async () => {
    const run = await seedLaunchedRun(fx.sql, { attempt: 3 });
    const response = await upload(fx.client, SERVICE_TOKEN, wholeUpload({ runId: run.runId, name: "runtime/pod.log" }, data));
    assert.equal(response.artifact?.attempt, 3);
    assert.ok((await download(fx.client, SERVICE_TOKEN, { runId: owner.runId, name: "report.txt" })).data.equals(data));
    assert.equal((await fx.client.list({ runId: owner.runId }, auth(SERVICE_TOKEN))).artifacts.length, 1);
    assert.equal((await fx.client.queryUpload({ uploadId }, auth(SERVICE_TOKEN))).finished, true);
    // A run that does not exist is no secret to the service token.
    await expectCode(upload(fx.client, SERVICE_TOKEN, wholeUpload({ runId: randomUUID(), name: "x" }, data)), Code.NotFound);
    await expectCode(fx.client.stat({ runId: randomUUID(), name: "x" }, auth(SERVICE_TOKEN)), Code.NotFound);
  });
});
