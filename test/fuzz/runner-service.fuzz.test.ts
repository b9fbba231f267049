import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, type MessageShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { AttachRequestSchema } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { CompletionStatus } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { arbitraryMessage, mutatedSequence } from "./support/arbitrary-message.ts";
import { checkOutcome, requestText } from "./support/check-outcome.ts";
import { seedLaunchedRun, type SeededRun } from "../support/seed-run.ts";
import { startFuzzStack, type FuzzStack } from "./support/fuzz-stack.ts";
import { countCase, reportCases, runsFor } from "./support/fuzz-runs.ts";

type AttachRequest = MessageShape<typeof AttachRequestSchema>;
const DEADLINE_MS = 5000;
// Stand-ins for the current own run: completions end runs, so a fresh one is seeded when needed.
const OWN_RUN = "$own-run";
const OWN_TOKEN = "$own-token";

describe("fuzz: corral.runner.v1.RunnerService/Attach, random and mutated streams against a real control plane", function () {
  this.timeout(600_000);
  let stack: FuzzStack;
  before(async () => {
    stack = await startFuzzStack();
  });
  after(async () => {
    reportCases("RunnerService");
    await stack?.close();
  });
  afterEach(async () => {
    await stack.assertHealthy();
  });

  /** Sends the messages, half-closes, reads every answer: the stream must end within the deadline. */
  let welcomed = 0;
  let own: SeededRun;
  const attach = async (template: AttachRequest[]) => {
    countCase("Attach");
    own ??= stack.own;
    const requests = template.map((r) =>
      r.message.case === "hello" && r.message.value.runId === OWN_RUN
        ? create(AttachRequestSchema, { message: { case: "hello", value: { ...r.message.value, runId: own.runId, credential: own.token } } })
        : r,
    );
    const { status } = (await stack.sql.one<{ status: string }>("select status from runs where id = ?", [own.runId]))!;
    if (["completed", "failed", "cancelled"].includes(status)) {
      own = await seedLaunchedRun(stack.sql);
      stack.runIds.push(own.runId);
      stack.secrets.push(own.token);
    }
    try {
      for await (const response of stack.runner.attach(
        (async function* () {
          yield* requests;
        })(),
        { timeoutMs: DEADLINE_MS },
      )) {
        // answers (acks, protocol errors) are the agent's business; welcomes are counted
        if (response.message.case === "welcome") welcomed++;
      }
      return { error: undefined, requests };
    } catch (error) {
      return { error, requests };
    }
  };

  // Half the hellos are the fuzzer's own, good ones: the cases behind them reach the attached state.
  const hello = (s: FuzzStack) =>
    fc
      .oneof(
        fc.constant({ runId: OWN_RUN, credential: OWN_TOKEN, attempt: 1 }),
        fc.record({
          runId: fc.constantFrom(s.own.runId, s.victim.runId, randomUUID()),
          credential: fc.constantFrom(s.own.token, s.victim.token, ...s.dictionary.strings),
          attempt: fc.constantFrom(0, 1, 2),
        }),
      )
      .map((h) => create(AttachRequestSchema, { message: { case: "hello", value: { ...h, protocolMin: 1, protocolMax: 2, agentVersion: "fuzz" } } }));
  const event = (sequence: number) =>
    create(AttachRequestSchema, {
      message: { case: "event", value: { sequence: BigInt(sequence), time: timestampNow(), payload: { case: "progress", value: { message: "fuzz" } } } },
    });
  /** An agent's stream as it should be: hello, events in order, a heartbeat, sometimes a completion. */
  const validStream = (s: FuzzStack) =>
    fc.tuple(hello(s), fc.integer({ min: 0, max: 4 }), fc.boolean()).map(([h, events, complete]) => [
      h,
      ...Array.from({ length: events }, (_, i) => event(i + 1)),
      create(AttachRequestSchema, { message: { case: "heartbeat", value: { time: timestampNow() } } }),
      ...(complete
        ? [create(AttachRequestSchema, { message: { case: "complete", value: { idempotencyKey: "fuzz-key", status: CompletionStatus.FAILED, reason: "fuzz" } } })]
        : []),
    ]);

  it("Attach: random streams", async () => {
    const stream = fc.array(arbitraryMessage(AttachRequestSchema, { dictionary: stack.dictionary }), { maxLength: 5 });
    await fc.assert(
      fc.asyncProperty(fc.tuple(fc.option(hello(stack), { nil: undefined }), stream), async ([first, rest]) => {
        const { error, requests } = await attach(first ? [first, ...rest] : rest);
        checkOutcome(error, requestText(requests), stack, "Attach");
      }),
      { numRuns: runsFor(2) },
    );
  });

  it("Attach: mutated valid streams", async () => {
    await fc.assert(
      fc.asyncProperty(mutatedSequence(AttachRequestSchema, validStream(stack), { dictionary: stack.dictionary }), async (template) => {
        const { error, requests } = await attach(template);
        checkOutcome(error, requestText(requests), stack, "Attach");
      }),
      { numRuns: runsFor(2) },
    );
  });

  it("Attach: the fuzzed streams got past hello often enough to test the attached state", () => {
    assert.ok(welcomed >= runsFor(2) / 10, `only ${welcomed} fuzzed streams were welcomed`);
  });

  it("Attach: another run's id with a wrong credential is answered as a run that does not exist", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(stack.own.token, ...stack.dictionary.strings.filter((s) => s !== stack.victim.token)),
        fc.constantFrom(0, 1, 2),
        async (credential, attempt) => {
          const helloFor = (runId: string) => [
            create(AttachRequestSchema, { message: { case: "hello", value: { runId, attempt, credential, protocolMin: 1, protocolMax: 2 } } }),
          ];
          const nobody = randomUUID();
          const victim = (await attach(helloFor(stack.victim.runId))).error as ConnectError;
          const missing = (await attach(helloFor(nobody))).error as ConnectError;
          assert.ok(victim instanceof ConnectError && missing instanceof ConnectError);
          assert.equal(victim.code, missing.code);
          assert.equal(victim.rawMessage.replaceAll(stack.victim.runId, "<id>"), missing.rawMessage.replaceAll(nobody, "<id>"));
          assert.ok(!victim.rawMessage.includes(stack.victim.runId));
        },
      ),
      { numRuns: Math.min(200, runsFor(4)) },
    );
  });
});
