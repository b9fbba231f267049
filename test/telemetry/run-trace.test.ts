import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createGitEnvironment } from "../../agent/src/pipeline/git.ts";
import { createSeededRemote } from "../agent/support/git-fixtures.ts";
import { startGitHttpServer, type GitHttpServer } from "../agent/support/git-http-server.ts";
import { ARTIFACT_SERVICE_TOKEN } from "../support/artifact-service.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { parsePrometheusText, sampleValue, type Sample } from "../support/prometheus-text.ts";
import { startStackFixture, type StackFixture } from "../support/stack.ts";

const GIT_USERNAME = "x-access-token";
const GIT_TOKEN = "ghs_telemetry-test-git-token-5b2d9f";
const SPEC_SECRET = "sk-telemetry-test-spec-secret-81f3";
const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

/** Every span the run's work should make, by service. */
const EXPECTED: Record<string, string[]> = {
  "corral-scheduler": ["corral.scheduler.v1.RunService/SubmitRun", "corral.admission", "corral.runtime.launch", "corral.finalize"],
  "corral-control-plane": ["corral.runner.v1.RunnerService/Attach", "corral.attach"],
  "corral-artifact": ["corral.artifact.v1.ArtifactService/Upload"],
  "corral-agent": [
    "corral.runner.v1.RunnerService/Attach",
    "corral.attempt",
    "corral.step.clone",
    "corral.step.agent",
    "corral.step.validation",
    "corral.step.commit",
    "corral.step.push",
    "corral.artifact.upload",
    "corral.artifact.v1.ArtifactService/Upload",
  ],
};

async function scrape(url: string): Promise<Sample[]> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  return parsePrometheusText(await response.text());
}

describe("telemetry of a run: one trace across every process, metrics that move", function () {
  this.timeout(120_000);
  let root: string;
  let receiver: OtlpReceiver;
  let git: GitHttpServer;
  let stack: StackFixture | undefined;
  let runId: string;
  let trace: ReceivedSpan[];
  let cancelledRunId: string;
  let reportedTraceId = "";
  let cancelledTrace: ReceivedSpan[];
  let metricsCancelled: Record<string, Sample[]> = {};
  const metricsBefore: Record<string, Sample[]> = {};
  const metricsAfter: Record<string, Sample[]> = {};

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-telemetry-"));
    receiver = await startOtlpReceiver();
    const remote = await createSeededRemote(root, "repos/app.git");
    git = await startGitHttpServer({ projectRoot: join(root, "repos"), username: GIT_USERNAME, password: GIT_TOKEN, env: createGitEnvironment(join(root, ".home")) });
    stack = await startStackFixture({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      CORRAL_SCHEDULER_METRICS_LISTEN: "127.0.0.1:0",
      CORRAL_CONTROL_PLANE_METRICS_LISTEN: "127.0.0.1:0",
      CORRAL_ARTIFACT_METRICS_LISTEN: "127.0.0.1:0",
      // The agent gets these for the clone and the push: they must never reach a span.
      CORRAL_GIT_URL_PREFIX: git.baseUrl,
      CORRAL_GIT_USERNAME: GIT_USERNAME,
      CORRAL_GIT_TOKEN: GIT_TOKEN,
    });
    const urls = {
      scheduler: stack.scheduler.metrics!.url,
      controlPlane: stack.controlPlane.metrics!.url,
      artifact: stack.artifacts!.server.metrics!.url,
    };
    for (const [name, url] of Object.entries(urls)) metricsBefore[name] = await scrape(url);

    const repositoryUrl = `${git.baseUrl}app.git`;
    assert.notEqual(remote.url, repositoryUrl);
    const { run } = await stack.client.submitRun({
      spec: {
        repositoryUrl,
        baseRef: "main",
        agent: { commandTemplate: "echo changed > CHANGED.md; echo working", prompt: "change something" },
        validationSteps: [{ name: "check", command: "test -f CHANGED.md" }],
        env: { API_KEY: SPEC_SECRET },
      },
    });
    runId = run!.id;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { run: now } = await stack.client.getRun({ runId });
      if (TERMINAL.includes(now!.status)) {
        assert.equal(now!.status, RunStatus.COMPLETED, now!.reason);
        reportedTraceId = now!.traceId;
        break;
      }
      if (Date.now() > deadline) throw new Error("the run did not end");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const [name, url] of Object.entries(urls)) metricsAfter[name] = await scrape(url);

    // A second run, cancelled during its agent step.
    const { run: second } = await stack.client.submitRun({
      spec: { repositoryUrl, baseRef: "main", agent: { commandTemplate: "echo started; sleep 30", prompt: "wait" } },
    });
    cancelledRunId = second!.id;
    for (let i = 0; ; i++) {
      const { run: now } = await stack.client.getRun({ runId: cancelledRunId });
      if (now!.currentStep === "agent") break;
      if (i > 600) throw new Error("the second run never reached its agent step");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await stack.client.cancelRun({ runId: cancelledRunId, reason: "enough", grace: { seconds: 2n } });
    for (let i = 0; ; i++) {
      const { run: now } = await stack.client.getRun({ runId: cancelledRunId });
      if (TERMINAL.includes(now!.status)) {
        assert.equal(now!.status, RunStatus.CANCELLED, now!.reason);
        break;
      }
      if (i > 600) throw new Error("the second run was not cancelled");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    metricsCancelled = { scheduler: await scrape(urls.scheduler) };

    // The agent exports as it exits; the services every 100 ms.
    await receiver.waitFor((spans) => {
      const traced = spans.filter((s) => s.attributes["corral.run_id"] === runId);
      return Object.entries(EXPECTED).every(([service, names]) =>
        names.every((name) => spans.some((s) => s.service === service && s.name === name && (traced.some((t) => t.traceId === s.traceId)))),
      );
    }, 30_000);
    // The finalization's span ends once the sandbox is cleaned up, which may be after the status is final.
    await receiver.waitFor(
      (spans) => ["corral.attempt", "corral.finalize"].every((name) => spans.some((s) => s.name === name && s.attributes["corral.run_id"] === cancelledRunId)),
      30_000,
    );
    // Closing flushes the rest (the finalization's own queries).
    await stack.close();
    stack = undefined;
    const submit = receiver.spans.find((s) => s.name === "corral.scheduler.v1.RunService/SubmitRun" && s.attributes["corral.run_id"] === runId)!;
    trace = receiver.spans.filter((s) => s.traceId === submit.traceId);
    const submitCancelled = receiver.spans.find((s) => s.name === "corral.scheduler.v1.RunService/SubmitRun" && s.attributes["corral.run_id"] === cancelledRunId)!;
    cancelledTrace = receiver.spans.filter((s) => s.traceId === submitCancelled.traceId);
  });

  after(async () => {
    await stack?.close();
    await git?.close();
    await receiver?.close();
    await rm(root, { recursive: true, force: true });
  });

  const one = (service: string, name: string, where: (s: ReceivedSpan) => boolean = () => true) => {
    const found = trace.filter((s) => s.service === service && s.name === name && where(s));
    assert.equal(found.length, 1, `one ${service} span ${name}; got ${found.length}`);
    return found[0]!;
  };
  const byId = () => new Map(trace.map((s) => [s.spanId, s]));
  const ancestors = (span: ReceivedSpan) => {
    const index = byId();
    const chain: ReceivedSpan[] = [];
    for (let at = index.get(span.parentSpanId); at; at = index.get(at.parentSpanId)) chain.push(at);
    return chain;
  };

  it("decodes every export as OTLP protobuf", () => {
    assert.deepEqual(receiver.refused, []);
  });

  it("puts everything about the run in one trace, rooted at SubmitRun", () => {
    const aboutRun = receiver.spans.filter((s) => s.attributes["corral.run_id"] === runId);
    // Named by run id: SubmitRun, admission, launch, attach, attempt, each upload served, finalization.
    assert.ok(aboutRun.length >= 8, `spans naming the run: ${aboutRun.length}`);
    assert.ok(trace.length >= 30, `spans in the trace: ${trace.length}`);
    assert.deepEqual([...new Set(aboutRun.map((s) => s.traceId))], [trace[0]!.traceId], "one trace id for the run");
    assert.equal(reportedTraceId, trace[0]!.traceId, "GetRun reports the run's trace id (corral get prints it)");
    const roots = trace.filter((s) => s.parentSpanId === "");
    assert.deepEqual(roots.map((s) => s.name), ["corral.scheduler.v1.RunService/SubmitRun"]);
    assert.equal(roots[0]!.kind, "SERVER");
    // Connected: every other span's parent is in the trace.
    const index = byId();
    for (const span of trace) if (span.parentSpanId) assert.ok(index.has(span.parentSpanId), `${span.service} ${span.name} has a parent outside the trace`);
  });

  it("has spans from the scheduler, the control plane, the artifact service and the agent", () => {
    for (const [service, names] of Object.entries(EXPECTED)) {
      for (const name of names) assert.ok(trace.some((s) => s.service === service && s.name === name), `${service}: ${name}`);
    }
    const services = new Set(trace.map((s) => s.service));
    assert.deepEqual([...services].sort(), ["corral-agent", "corral-artifact", "corral-control-plane", "corral-scheduler"]);
  });

  it("links each span to the right parent", () => {
    const submit = one("corral-scheduler", "corral.scheduler.v1.RunService/SubmitRun");
    for (const name of ["corral.admission", "corral.runtime.launch", "corral.finalize"]) {
      assert.equal(one("corral-scheduler", name).parentSpanId, submit.spanId, `${name} is a child of SubmitRun`);
    }
    const attach = one("corral-control-plane", "corral.attach");
    assert.equal(attach.parentSpanId, submit.spanId, "the attach span is a child of the run's span");
    // The agent's attach call was made before it knew its run: the launch handed it the trace.
    // (A reconnect under load would add a call: each is the launch's child.)
    const launch = one("corral-scheduler", "corral.runtime.launch");
    const agentAttaches = trace.filter((s) => s.service === "corral-agent" && s.name === "corral.runner.v1.RunnerService/Attach");
    for (const call of agentAttaches) {
      assert.equal(call.kind, "CLIENT");
      assert.equal(call.parentSpanId, launch.spanId, "the agent's Attach call is a child of the launch");
    }
    assert.equal(attach.links.length, 1, "the attach span links to the call it was made in");
    const serverAttach = byId().get(attach.links[0]!.spanId)!;
    assert.equal(serverAttach.service, "corral-control-plane");
    assert.equal(serverAttach.name, "corral.runner.v1.RunnerService/Attach");
    assert.equal(serverAttach.kind, "SERVER");
    assert.ok(agentAttaches.some((call) => call.spanId === serverAttach.parentSpanId), "the control plane's Attach span is a child of the agent's call");

    const attempt = one("corral-agent", "corral.attempt");
    assert.equal(attempt.parentSpanId, attach.spanId, "the attempt is a child of the attach (the assignment's trace context)");
    const steps = trace.filter((s) => s.name.startsWith("corral.step."));
    assert.deepEqual(steps.sort((a, b) => a.startMs - b.startMs).map((s) => `${s.name} ${s.attributes["corral.step.name"]} ${s.attributes["corral.step.outcome"]}`), [
      "corral.step.clone clone succeeded",
      "corral.step.agent agent succeeded",
      "corral.step.validation check succeeded",
      "corral.step.commit commit succeeded",
      "corral.step.push push succeeded",
    ]);
    for (const step of steps) assert.equal(step.parentSpanId, attempt.spanId, `${step.name} is a child of the attempt`);

    // Each artifact upload: the agent's span, its client call, the artifact service's server span.
    const uploads = trace.filter((s) => s.service === "corral-agent" && s.name === "corral.artifact.upload");
    assert.ok(uploads.some((u) => u.attributes["corral.artifact"] === "attempts/1/run.log"), "the run log's upload");
    assert.ok(uploads.some((u) => u.attributes["corral.artifact"] === "attempts/1/change.diff"), "the diff's upload");
    for (const upload of uploads) assert.equal(upload.parentSpanId, attempt.spanId);
    const servedUploads = trace.filter((s) => s.service === "corral-artifact" && s.name === "corral.artifact.v1.ArtifactService/Upload");
    for (const served of servedUploads) {
      const caller = byId().get(served.parentSpanId)!;
      assert.equal(caller.service, "corral-agent");
      assert.equal(caller.kind, "CLIENT");
      assert.equal(caller.name, "corral.artifact.v1.ArtifactService/Upload");
      assert.ok(ancestors(caller).includes(attempt), "an upload call is under the attempt");
      assert.equal(served.attributes["corral.run_id"], runId);
    }
    const diffUpload = uploads.find((u) => u.attributes["corral.artifact"] === "attempts/1/change.diff")!;
    assert.ok(servedUploads.some((s) => ancestors(s).includes(diffUpload)), "the diff's upload reached the artifact service inside its span");
  });

  it("records PostgreSQL queries as children of the work that made them", () => {
    const queries = trace.filter((s) => s.attributes["db.system.name"] === "postgresql");
    assert.ok(queries.length > 0, "database spans");
    const submit = one("corral-scheduler", "corral.scheduler.v1.RunService/SubmitRun");
    const insert = queries.find((q) => q.parentSpanId === submit.spanId && /insert into runs/.test(String(q.attributes["db.query.text"])));
    assert.ok(insert, "the run's insert is a child of SubmitRun");
    const finalize = one("corral-scheduler", "corral.finalize");
    assert.ok(queries.some((q) => q.parentSpanId === finalize.spanId), "finalization's queries are its children");
  });

  it("names the run on its spans: run id, attempt, runtime, repository", () => {
    for (const [service, name] of [["corral-scheduler", "corral.runtime.launch"], ["corral-control-plane", "corral.attach"], ["corral-agent", "corral.attempt"], ["corral-scheduler", "corral.finalize"]] as const) {
      const span = one(service, name);
      assert.equal(span.attributes["corral.run_id"], runId);
      assert.equal(span.attributes["corral.attempt"], 1);
      assert.equal(span.attributes["corral.repository"], `${git.baseUrl}app.git`);
      if (service !== "corral-agent") assert.equal(span.attributes["corral.runtime"], "local");
    }
    assert.equal(one("corral-scheduler", "corral.finalize").attributes["corral.final_status"], "completed");
    const admission = one("corral-scheduler", "corral.admission");
    assert.equal(typeof admission.attributes["corral.queue_wait_ms"], "number");
    const submit = one("corral-scheduler", "corral.scheduler.v1.RunService/SubmitRun");
    assert.equal(submit.attributes["rpc.system"], "grpc");
    assert.equal(submit.attributes["rpc.service"], "corral.scheduler.v1.RunService");
    assert.equal(submit.attributes["rpc.method"], "SubmitRun");
    assert.equal(submit.attributes["rpc.grpc.status_code"], 0);
  });

  it("puts no credential in any span: not the git token, the spec's secret, the service token or an attempt credential", () => {
    const everything = JSON.stringify(receiver.spans);
    for (const secret of [GIT_TOKEN, encodeURIComponent(GIT_TOKEN), Buffer.from(`${GIT_USERNAME}:${GIT_TOKEN}`).toString("base64"), SPEC_SECRET, ARTIFACT_SERVICE_TOKEN]) {
      assert.ok(!everything.includes(secret), `a secret is in the spans: ${secret.slice(0, 6)}…`);
    }
    assert.doesNotMatch(everything, /corral_att_[A-Za-z0-9_-]{10}/, "an attempt credential");
    assert.doesNotMatch(everything, /Bearer /i, "an authorization header");
  });

  it("serves /metrics as Prometheus text, and the run moved its histograms and counters", () => {
    const moved = (service: string, name: string, labels: Record<string, string> = {}) => sampleValue(metricsAfter[service]!, name, labels) - sampleValue(metricsBefore[service]!, name, labels);
    for (const stage of ["queued_to_launched", "launched_to_attached", "attached_to_first_event"]) {
      assert.equal(moved("scheduler", "corral_run_start_latency_seconds_count", { stage, runtime: "local" }), 1, `start latency ${stage}`);
      assert.ok(moved("scheduler", "corral_run_start_latency_seconds_bucket", { stage, le: "+Inf" }) === 1);
    }
    assert.equal(moved("scheduler", "corral_runs_finished_total", { status: "completed", runtime: "local" }), 1);
    assert.equal(sampleValue(metricsAfter.scheduler!, "corral_queue_depth"), 0);
    assert.ok(metricsAfter.scheduler!.some((s) => s.name === "corral_queue_depth"), "queue depth is reported");
    assert.ok(moved("controlPlane", "corral_events_ingested_total") >= 10, "events ingested");
    assert.equal(moved("controlPlane", "corral_attaches_total"), 1);
    assert.ok(metricsAfter.controlPlane!.some((s) => s.name === "corral_attached_streams"), "attached streams are reported");
    assert.ok(moved("artifact", "corral_upload_bytes_total") > 0, "upload bytes");
    assert.ok(moved("artifact", "corral_artifacts_stored_total") >= 2, "artifacts stored");
  });

  it("shows a cancellation in the run's trace: the request, the agent stopping its step, the finalization", () => {
    const named = (name: string) => cancelledTrace.filter((s) => s.name === name);
    const submit = named("corral.scheduler.v1.RunService/SubmitRun")[0]!;
    const requested = named("corral.cancel_requested");
    assert.equal(requested.length, 1);
    assert.equal(requested[0]!.service, "corral-scheduler");
    assert.equal(requested[0]!.parentSpanId, submit.spanId);
    assert.equal(requested[0]!.attributes["corral.cancel.grace_ms"], 2000);
    // Linked to the CancelRun call, which has a trace of its own.
    const cancelCall = receiver.spans.find((s) => s.name === "corral.scheduler.v1.RunService/CancelRun" && s.spanId === requested[0]!.links[0]?.spanId);
    assert.ok(cancelCall, "linked to the CancelRun call's span");
    assert.notEqual(cancelCall.traceId, submit.traceId);

    const attempt = named("corral.attempt")[0]!;
    const cancel = named("corral.cancel");
    assert.equal(cancel.length, 1);
    assert.equal(cancel[0]!.service, "corral-agent");
    assert.equal(cancel[0]!.parentSpanId, attempt.spanId);
    assert.equal(cancel[0]!.attributes["corral.status"], "cancelled");
    const agentStep = named("corral.step.agent")[0]!;
    assert.equal(agentStep.attributes["corral.step.outcome"], "cancelled");
    assert.ok(cancel[0]!.startMs <= agentStep.endMs, "the cancel began before the step ended");
    assert.equal(named("corral.finalize")[0]!.attributes["corral.final_status"], "cancelled");
  });

  it("measures the cancel's latency and counts the cancelled run", () => {
    const moved = (name: string, labels: Record<string, string>) => sampleValue(metricsCancelled.scheduler!, name, labels) - sampleValue(metricsAfter.scheduler!, name, labels);
    assert.equal(moved("corral_run_cancel_latency_seconds_count", { runtime: "local" }), 1);
    assert.equal(moved("corral_runs_finished_total", { status: "cancelled", runtime: "local" }), 1);
    const seconds = moved("corral_run_cancel_latency_seconds_sum", { runtime: "local" });
    assert.ok(seconds > 0 && seconds < 10, `cancel latency ${seconds} s`);
  });
});
