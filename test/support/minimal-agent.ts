// A minimal runner agent, written against the contract alone: it offers only protocol version 1
// and no optional capabilities, sends one event and a successful completion. It proves that
// the control plane and scheduler need nothing from an agent beyond the protocol's core.
import { createInterface } from "node:readline";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AttachRequestSchema, RunnerService, type AttachRequest } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { CompletionStatus } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { createAsyncQueue } from "@corral/plumbing/async-queue.ts";

const credential = await new Promise<string>((resolve) => createInterface({ input: process.stdin }).once("line", resolve));
const client = createClient(RunnerService, createGrpcTransport({ baseUrl: process.env.CORRAL_CONTROL_PLANE_URL! }));
const requests = createAsyncQueue<AttachRequest>();
const send = (message: MessageInitShape<typeof AttachRequestSchema>["message"]) => requests.push(create(AttachRequestSchema, { message }));
send({ case: "hello", value: { runId: process.env.CORRAL_RUN_ID!, attempt: Number(process.env.CORRAL_ATTEMPT), credential, protocolMin: 1, protocolMax: 1, agentVersion: "minimal", capabilities: [] } });
for await (const response of client.attach(requests)) {
  if (response.message.case === "welcome") {
    send({ case: "event", value: { sequence: 1n, time: timestampNow(), payload: { case: "runStarted", value: { agentVersion: "minimal", protocolVersion: response.message.value.protocolVersion } } } });
    send({ case: "complete", value: { idempotencyKey: "minimal-1", status: CompletionStatus.SUCCEEDED, result: { commitSha: "0".repeat(40), branch: "minimal", changedFiles: [] }, lastSequence: 1n } });
  } else if (response.message.case === "completionAck") {
    requests.close();
  }
}
