import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import fc from "fast-check";
import {
  CancelRunRequestSchema,
  GetRunRequestSchema,
  ListRunsRequestSchema,
  ListRuntimesRequestSchema,
  RetryRunRequestSchema,
  SubmitRunRequestSchema,
  WatchRunRequestSchema,
} from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { validRequest } from "../scheduler/submit-run-arbitraries.ts";
import { arbitraryMessage, mutatedMessage } from "./support/arbitrary-message.ts";
import { checkOutcome, requestText } from "./support/check-outcome.ts";
import { startFuzzStack, type FuzzStack } from "./support/fuzz-stack.ts";
import { countCase, reportCases, runsFor } from "./support/fuzz-runs.ts";

const DEADLINE_MS = 5000;

describe("fuzz: corral.scheduler.v1.RunService, random and mutated messages against a real scheduler", function () {
  this.timeout(600_000);
  let stack: FuzzStack;
  before(async () => {
    stack = await startFuzzStack();
  });
  after(async () => {
    reportCases("RunService");
    await stack?.close();
  });
  afterEach(async () => {
    await stack.assertHealthy();
  });

  /** Random messages of the type, and mutations of valid ones: every case ends with success or a precise error. */
  function fuzz<Desc extends DescMessage>(
    rpc: string,
    desc: Desc,
    valid: (s: FuzzStack) => fc.Arbitrary<MessageShape<Desc>>,
    call: (s: FuzzStack, request: MessageShape<Desc>) => Promise<unknown>,
  ) {
    it(`${rpc}: random messages`, async () => {
      await fc.assert(
        fc.asyncProperty(arbitraryMessage(desc, { dictionary: stack.dictionary }), async (request) => {
          countCase(rpc);
          const error = await call(stack, request).then(() => undefined, (e: unknown) => e);
          checkOutcome(error, requestText(request), stack, rpc);
        }),
        { numRuns: runsFor(2) },
      );
    });
    it(`${rpc}: mutated valid messages`, async () => {
      await fc.assert(
        fc.asyncProperty(mutatedMessage(desc, valid(stack), { dictionary: stack.dictionary }), async (request) => {
          countCase(rpc);
          const error = await call(stack, request).then(() => undefined, (e: unknown) => e);
          checkOutcome(error, requestText(request), stack, rpc);
        }),
        { numRuns: runsFor(2) },
      );
    });
  }

  const knownRun = (s: FuzzStack) => fc.constantFrom(...s.runIds, "6f1c5f6e-0000-4000-8000-000000000000");

  fuzz("SubmitRun", SubmitRunRequestSchema, () => validRequest, (s, r) => s.runs.submitRun(r, { timeoutMs: DEADLINE_MS }));
  fuzz("GetRun", GetRunRequestSchema, (s) => knownRun(s).map((runId) => create(GetRunRequestSchema, { runId })), (s, r) =>
    s.runs.getRun(r, { timeoutMs: DEADLINE_MS }),
  );
  fuzz(
    "ListRuns",
    ListRunsRequestSchema,
    () => fc.record({ pageSize: fc.integer({ min: 0, max: 50 }) }).map((init) => create(ListRunsRequestSchema, init)),
    (s, r) => s.runs.listRuns(r, { timeoutMs: DEADLINE_MS }),
  );
  fuzz(
    "CancelRun",
    CancelRunRequestSchema,
    (s) => knownRun(s).map((runId) => create(CancelRunRequestSchema, { runId, reason: "fuzz" })),
    (s, r) => s.runs.cancelRun(r, { timeoutMs: DEADLINE_MS }),
  );
  fuzz("RetryRun", RetryRunRequestSchema, (s) => knownRun(s).map((runId) => create(RetryRunRequestSchema, { runId })), (s, r) =>
    s.runs.retryRun(r, { timeoutMs: DEADLINE_MS }),
  );
  fuzz("WatchRun", WatchRunRequestSchema, (s) => knownRun(s).map((runId) => create(WatchRunRequestSchema, { runId })), (s, r) =>
    watchBriefly(s, r),
  );
  fuzz("ListRuntimes", ListRuntimesRequestSchema, () => fc.constant(create(ListRuntimesRequestSchema)), (s, r) =>
    s.runs.listRuntimes(r, { timeoutMs: DEADLINE_MS }),
  );
});

/**
 * A watch follows a live run for as long as the client stays: read for a moment, then leave.
 * Our own leaving is not a failure; an error before it, or no first answer within the
 * deadline, is checked like any other.
 */
async function watchBriefly(s: FuzzStack, request: MessageShape<typeof WatchRunRequestSchema>): Promise<void> {
  const leave = new AbortController();
  const timer = setTimeout(() => leave.abort(), 200);
  try {
    for await (const _ of s.runs.watchRun(request, { signal: leave.signal, timeoutMs: DEADLINE_MS })) {
      // reading is all
    }
  } catch (error) {
    if (!leave.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
  }
}
