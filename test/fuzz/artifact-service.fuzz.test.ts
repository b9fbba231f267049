import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import {
  DownloadRequestSchema,
  ListRequestSchema,
  QueryUploadRequestSchema,
  StatRequestSchema,
  UploadRequestSchema,
} from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { ARTIFACT_SERVICE_TOKEN } from "../support/artifact-service.ts";
import { arbitraryMessage, mutatedMessage, mutatedSequence } from "./support/arbitrary-message.ts";
import { checkOutcome, requestText } from "./support/check-outcome.ts";
import { startFuzzStack, type FuzzStack } from "./support/fuzz-stack.ts";
import { countCase, reportCases, runsFor } from "./support/fuzz-runs.ts";

type UploadRequest = MessageShape<typeof UploadRequestSchema>;
const DEADLINE_MS = 5000;
const headers = (authorization: string | undefined) => (authorization === undefined ? {} : { authorization });

describe("fuzz: corral.artifact.v1.ArtifactService, random and mutated messages and credentials against a real artifact service", function () {
  this.timeout(600_000);
  let stack: FuzzStack;
  before(async () => {
    stack = await startFuzzStack();
  });
  after(async () => {
    reportCases("ArtifactService");
    await stack?.close();
  });
  afterEach(async () => {
    await stack.assertHealthy();
  });

  const calls = {
    Upload: (requests: UploadRequest[], authorization?: string) =>
      stack.artifacts.upload(
        (async function* () {
          yield* requests;
        })(),
        { timeoutMs: DEADLINE_MS, headers: headers(authorization) },
      ),
    QueryUpload: (r: MessageShape<typeof QueryUploadRequestSchema>, authorization?: string) =>
      stack.artifacts.queryUpload(r, { timeoutMs: DEADLINE_MS, headers: headers(authorization) }),
    Download: (r: MessageShape<typeof DownloadRequestSchema>, authorization?: string) => downloadBriefly(stack, r, authorization),
    Stat: (r: MessageShape<typeof StatRequestSchema>, authorization?: string) =>
      stack.artifacts.stat(r, { timeoutMs: DEADLINE_MS, headers: headers(authorization) }),
    List: (r: MessageShape<typeof ListRequestSchema>, authorization?: string) =>
      stack.artifacts.list(r, { timeoutMs: DEADLINE_MS, headers: headers(authorization) }),
  };

  const authorization = () => fc.constantFrom(...stack.authorizations);
  const runId = () => fc.constantFrom(stack.own.runId, stack.victim.runId, randomUUID(), "not-a-run");
  const name = fc.constantFrom("out.txt", "logs/run.log", "a/b/c.bin", "run.log");

  function fuzz<Desc extends DescMessage, Req>(
    rpc: keyof typeof calls,
    random: () => fc.Arbitrary<Req>,
    mutated: () => fc.Arbitrary<Req>,
  ) {
    const call = calls[rpc] as (r: Req, authorization?: string) => Promise<unknown>;
    for (const [kind, arb] of [
      ["random", random],
      ["mutated valid", mutated],
    ] as const) {
      it(`${rpc}: ${kind} messages, any credential`, async () => {
        await fc.assert(
          fc.asyncProperty(arb(), authorization(), async (request, auth) => {
            countCase(rpc);
            const error = await call(request, auth).then(() => undefined, (e: unknown) => e);
            checkOutcome(error, requestText(request, auth), stack, rpc);
          }),
          { numRuns: runsFor(2) },
        );
      });
    }
  }
  const options = () => ({ dictionary: stack.dictionary });
  const simple = <Desc extends DescMessage>(desc: Desc, valid: () => fc.Arbitrary<MessageShape<Desc>>) =>
    [() => arbitraryMessage(desc, options()), () => mutatedMessage(desc, valid(), options())] as const;

  /** An upload as the agent sends it: header, chunks at their offsets, finish with the digest. */
  const validUpload = () =>
    fc.tuple(runId(), name, fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { maxLength: 3 })).map(([run, file, chunks]) => {
      const data = Buffer.concat(chunks);
      let offset = 0n;
      return [
        create(UploadRequestSchema, { message: { case: "header", value: { uploadId: randomUUID(), runId: run, name: file, contentType: "text/plain" } } }),
        ...chunks.map((chunk) => {
          const message = create(UploadRequestSchema, { message: { case: "chunk", value: { offset, data: chunk } } });
          offset += BigInt(chunk.length);
          return message;
        }),
        create(UploadRequestSchema, {
          message: { case: "finish", value: { sha256: createHash("sha256").update(data).digest("hex"), size: BigInt(data.length) } },
        }),
      ];
    });

  fuzz(
    "Upload",
    () => fc.array(arbitraryMessage(UploadRequestSchema, options()), { maxLength: 5 }),
    () => mutatedSequence(UploadRequestSchema, validUpload(), options()),
  );
  fuzz("QueryUpload", ...simple(QueryUploadRequestSchema, () => fc.uuid().map((uploadId) => create(QueryUploadRequestSchema, { uploadId }))));
  fuzz(
    "Download",
    ...simple(DownloadRequestSchema, () =>
      fc.record({ runId: runId(), name, follow: fc.boolean() }).map((init) => create(DownloadRequestSchema, init)),
    ),
  );
  fuzz("Stat", ...simple(StatRequestSchema, () => fc.record({ runId: runId(), name }).map((init) => create(StatRequestSchema, init))));
  fuzz("List", ...simple(ListRequestSchema, () => runId().map((r) => create(ListRequestSchema, { runId: r }))));

  it("another run's artifacts with a wrong credential are answered as a run that does not exist, on every RPC", async () => {
    const wrong = stack.authorizations.filter((a) => !a?.includes(ARTIFACT_SERVICE_TOKEN) && !a?.includes(stack.victim.token));
    const asks: Record<string, (run: string, file: string) => unknown> = {
      Upload: (run, file) => [create(UploadRequestSchema, { message: { case: "header", value: { uploadId: randomUUID(), runId: run, name: file } } })],
      Download: (run, file) => create(DownloadRequestSchema, { runId: run, name: file }),
      Stat: (run, file) => create(StatRequestSchema, { runId: run, name: file }),
      List: (run) => create(ListRequestSchema, { runId: run }),
    };
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...Object.keys(asks)), fc.constantFrom(...wrong), name, async (rpc, auth, file) => {
        const call = calls[rpc as keyof typeof calls] as (r: unknown, a?: string) => Promise<unknown>;
        const nobody = randomUUID();
        const victim = await call(asks[rpc]!(stack.victim.runId, file), auth).then(() => undefined, (e: unknown) => e);
        const missing = await call(asks[rpc]!(nobody, file), auth).then(() => undefined, (e: unknown) => e);
        assert.ok(victim instanceof ConnectError && missing instanceof ConnectError, `${rpc} with ${auth} on another run succeeded`);
        assert.equal(victim.code, missing.code);
        assert.equal(victim.rawMessage.replaceAll(stack.victim.runId, "<id>"), missing.rawMessage.replaceAll(nobody, "<id>"));
        assert.ok(!victim.rawMessage.includes(stack.victim.runId));
      }),
      { numRuns: Math.min(200, runsFor(4)) },
    );
  });
});

/** A download may follow an upload in progress for as long as the client stays: read for a moment, then leave. */
async function downloadBriefly(s: FuzzStack, request: MessageShape<typeof DownloadRequestSchema>, authorization?: string): Promise<void> {
  const leave = new AbortController();
  const timer = setTimeout(() => leave.abort(), 200);
  try {
    for await (const _ of s.artifacts.download(request, { signal: leave.signal, timeoutMs: DEADLINE_MS, headers: headers(authorization) })) {
      // reading is all
    }
  } catch (error) {
    if (!leave.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
  }
}
