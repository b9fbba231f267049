import assert from "node:assert/strict";
import { create, equals, fromBinary, fromJson, toBinary, toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SubmitRunRequestSchema, WatchRunResponseSchema, RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { AttachRequestSchema, AttachResponseSchema } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { UploadRequestSchema, DownloadResponseSchema } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { FieldViolationsSchema, ProtocolVersionMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { CompletionStatus, ArtifactState } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { LogStream, Phase, StepKind, StepOutcome } from "@corral/contract/corral/common/v1/run_event_pb.ts";

/** Binary and JSON must both give back exactly the message that went in. */
function roundTrip<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void {
  const binary = fromBinary(schema, toBinary(schema, message));
  assert.ok(equals(schema, binary, message), `${schema.typeName} changed through binary`);
  const json = fromJson(schema, toJson(schema, message));
  assert.ok(equals(schema, json, message), `${schema.typeName} changed through JSON`);
}

const at = timestampFromDate(new Date("2026-11-29T10:00:00.123Z"));

describe("contract round-trips", () => {
  it("SubmitRunRequest with a full spec, maps and durations", () => {
    const message = create(SubmitRunRequestSchema, {
      spec: {
        repositoryUrl: "file:///srv/git/app.git",
        baseRef: "main",
        branch: "corral/fix-typo",
        agent: { commandTemplate: "goose run --instructions {prompt_file}", prompt: "Fix the typo in README.md\nand nothing else" },
        validationSteps: [
          { name: "test", command: "npm test", timeout: durationFromMs(300_000) },
          { name: "lint", command: "npm run lint" },
        ],
        timeouts: { run: durationFromMs(3_600_000), step: durationFromMs(1_800_000), clone: durationFromMs(300_000), grace: durationFromMs(10_000) },
        limits: { cpuMillis: 2000, memoryBytes: 4n * 1024n ** 3n, pids: 4096, diskBytes: 10n * 1024n ** 3n },
        artifactGlobs: ["reports/**/*.xml"],
        commit: { authorName: "Corral", authorEmail: "corral@example.com", message: "Fix typo" },
        env: { CI: "true", LANG: "C.UTF-8" },
        labels: { team: "platform" },
      },
      requestId: "req-1",
    });
    roundTrip(SubmitRunRequestSchema, message);
    const json = toJson(SubmitRunRequestSchema, message) as { spec: { timeouts: { run: string } } };
    assert.equal(json.spec.timeouts.run, "3600s", "durations use the canonical JSON form");
  });

  it("every AttachRequest case, events with each payload type", () => {
    const cases = [
      create(AttachRequestSchema, { message: { case: "hello", value: { runId: "9b2f5a4e-3c1d-4e8f-a7b6-5d4c3b2a1f0e", attempt: 2, credential: "c", protocolMin: 1, protocolMax: 3, agentVersion: "0.1.0", capabilities: ["log-chunks"] } } }),
      create(AttachRequestSchema, { message: { case: "event", value: { sequence: 7n, time: at, payload: { case: "stepFinished", value: { name: "test", kind: StepKind.VALIDATION, outcome: StepOutcome.FAILED, exitCode: 1, duration: durationFromMs(1500), message: "exit 1" } } } } }),
      create(AttachRequestSchema, { message: { case: "event", value: { sequence: 8n, time: at, payload: { case: "logChunk", value: { step: "test", stream: LogStream.STDERR, data: new Uint8Array([0xff, 0x00, 0x41]) } } } } }),
      create(AttachRequestSchema, { message: { case: "event", value: { sequence: 9n, time: at, payload: { case: "phaseChanged", value: { phase: Phase.VALIDATING, previous: Phase.AGENT } } } } }),
      create(AttachRequestSchema, { message: { case: "event", value: { sequence: 10n, time: at, payload: { case: "progress", value: { message: "halfway", percent: 50 } } } } }),
      create(AttachRequestSchema, { message: { case: "heartbeat", value: { time: at, leaseEpoch: 3n } } }),
      create(AttachRequestSchema, { message: { case: "complete", value: { idempotencyKey: "k", status: CompletionStatus.SUCCEEDED, result: { commitSha: "a".repeat(40), branch: "corral/x", changedFiles: ["README.md"] }, artifactState: ArtifactState.PARTIAL, lastSequence: 10n } } }),
    ];
    for (const message of cases) roundTrip(AttachRequestSchema, message);
  });

  it("optional fields keep presence: percent 0 and exit code 0 are not 'unset'", () => {
    const zero = create(AttachRequestSchema, { message: { case: "event", value: { sequence: 1n, payload: { case: "progress", value: { message: "start", percent: 0 } } } } });
    const back = fromBinary(AttachRequestSchema, toBinary(AttachRequestSchema, zero));
    assert.equal(back.message.case, "event");
    const payload = back.message.case === "event" ? back.message.value.payload : undefined;
    assert.equal(payload?.case === "progress" ? payload.value.percent : "missing", 0);
  });

  it("AttachResponse welcome, cancel and errors", () => {
    roundTrip(AttachResponseSchema, create(AttachResponseSchema, {
      message: {
        case: "welcome",
        value: {
          protocolVersion: 1,
          ackedSequence: 41n,
          leaseEpoch: 2n,
          heartbeatInterval: durationFromMs(5000),
          leaseDuration: durationFromMs(30_000),
          assignment: {
            runId: "r", attempt: 1, artifactServiceUrl: "http://127.0.0.1:8702", deadline: at,
            gitCredentials: { username: "x-access-token", password: "p", urlPrefix: "https://github.com/", expiresAt: at },
            limits: { maxMessageBytes: 4 << 20, maxEventPayloadBytes: 64 << 10, maxEventsPerSecond: 1000, maxEventsBurst: 5000 },
            traceContext: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "" },
          },
        },
      },
    }));
    roundTrip(AttachResponseSchema, create(AttachResponseSchema, { message: { case: "cancel", value: { reason: "user", grace: durationFromMs(2500), requestedAt: at } } }));
  });

  it("WatchRun, artifacts and error details", () => {
    roundTrip(WatchRunResponseSchema, create(WatchRunResponseSchema, { update: { case: "run", value: { id: "r", status: RunStatus.CANCELLING, attempt: 1, createdAt: at } } }));
    roundTrip(UploadRequestSchema, create(UploadRequestSchema, { message: { case: "chunk", value: { offset: 1n << 40n, data: new Uint8Array(1024).fill(7) } } }));
    roundTrip(DownloadResponseSchema, create(DownloadResponseSchema, { artifact: { runId: "r", name: "logs/run.log", size: 10n, complete: false }, offset: 0n, data: new Uint8Array([1, 2]) }));
    roundTrip(FieldViolationsSchema, create(FieldViolationsSchema, { violations: [{ field: "spec.base_ref", description: "required" }] }));
    roundTrip(ProtocolVersionMismatchSchema, create(ProtocolVersionMismatchSchema, { supportedMin: 1, supportedMax: 1, offeredMin: 2, offeredMax: 3 }));
  });

  it("rejects JSON naming an unknown field", () => {
    assert.throws(() => fromJson(SubmitRunRequestSchema, { spec: { repositoryUrl: "x", bogus: 1 } }), /bogus/);
  });
});
