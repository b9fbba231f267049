import assert from "node:assert/strict";
import fc from "fast-check";
import { agentJob, credentialSecret, type SandboxShape } from "@corral/scheduler/runtime/kubernetes/sandbox-manifests.ts";
import { attemptOf, DNS1123_LABEL, jobName, sandboxLabels, secretName } from "@corral/scheduler/runtime/kubernetes/sandbox-names.ts";
import type { LaunchRequest } from "@corral/scheduler/runtime/runtime-backend.ts";

const shape: SandboxShape = {
  namespace: "runs",
  image: "corral-agent:test",
  imagePullSecrets: ["registry"],
  ttlSecondsAfterFinished: 600,
  defaults: { cpuMillis: 1000, memoryBytes: 2 * 1024 ** 3, diskBytes: 10 * 1024 ** 3 },
  agentEnv: { CORRAL_LOG_LEVEL: "debug" },
};
const request: LaunchRequest = {
  runId: "0b7c6f2e-4a51-4f8e-9d7a-2f1e3c4b5a69",
  attempt: 3,
  credential: "corral_att_secret-value",
  controlPlaneUrl: "http://corral-control-plane:8701",
  limits: {},
  timeouts: { runMs: 3_600_000, graceMs: 15_000 },
};
const uuid = fc.uuid().map((u) => u.toLowerCase());

describe("kubernetes sandbox names", () => {
  it("are DNS-1123 labels of at most 63 characters for every run id and attempt", () => {
    fc.assert(
      fc.property(uuid, fc.integer({ min: 1, max: 2 ** 32 - 1 }), (runId, attempt) => {
        for (const name of [jobName(runId, attempt), secretName(runId, attempt)]) {
          assert.ok(name.length <= 63, name);
          assert.match(name, DNS1123_LABEL);
        }
        // Label values have the same 63-character limit.
        for (const value of Object.values(sandboxLabels(runId, attempt))) assert.ok(value.length <= 63);
      }),
    );
  });

  it("never collide: different attempts give different names, and the labels give the attempt back", () => {
    fc.assert(
      fc.property(uuid, uuid, fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 10_000 }), (a, b, n, m) => {
        fc.pre(a !== b || n !== m);
        assert.notEqual(jobName(a, n), jobName(b, m));
        assert.notEqual(secretName(a, n), jobName(b, m));
        assert.deepEqual(attemptOf(sandboxLabels(a, n)), { runId: a, attempt: n });
      }),
    );
  });

  it("refuse what is not a run id or an attempt", () => {
    assert.throws(() => jobName("../../etc", 1), /not a lowercase uuid/);
    assert.throws(() => jobName(request.runId.toUpperCase(), 1), /not a lowercase uuid/);
    assert.throws(() => jobName(request.runId, 0), /attempt 0 is out of range/);
    assert.throws(() => jobName(request.runId, 1.5), /out of range/);
    assert.equal(attemptOf({ "corral.dev/run-id": "x", "corral.dev/attempt": "1" }), undefined);
    assert.equal(attemptOf(undefined), undefined);
  });
});

describe("kubernetes sandbox manifests", () => {
  it("make a Job that is never retried, bounded in time, cleaned up, and locked down", () => {
    const job = agentJob(shape, request);
    assert.equal(job.metadata?.name, `corral-${request.runId}-3`);
    assert.equal(job.metadata?.namespace, "runs");
    assert.equal(job.metadata?.labels?.["corral.dev/run-id"], request.runId);
    assert.equal(job.metadata?.labels?.["app.kubernetes.io/managed-by"], "corral-scheduler");
    const spec = job.spec!;
    assert.equal(spec.backoffLimit, 0);
    assert.equal(spec.ttlSecondsAfterFinished, 600);
    // The run's budget plus its grace plus the start-up allowance.
    assert.equal(spec.activeDeadlineSeconds, 3600 + 15 + 300);
    const pod = spec.template.spec!;
    assert.deepEqual(spec.template.metadata?.labels, job.metadata?.labels);
    assert.equal(pod.restartPolicy, "Never");
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.terminationGracePeriodSeconds, 15);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.deepEqual(pod.securityContext?.seccompProfile, { type: "RuntimeDefault" });
    assert.deepEqual(pod.imagePullSecrets, [{ name: "registry" }]);
    const [agent] = pod.containers;
    assert.equal(agent!.name, "agent");
    assert.equal(agent!.image, "corral-agent:test");
    assert.deepEqual(agent!.securityContext?.capabilities, { drop: ["ALL"] });
    assert.equal(agent!.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(agent!.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(agent!.resources, { requests: { cpu: "1000m", memory: String(2 * 1024 ** 3) }, limits: { cpu: "1000m", memory: String(2 * 1024 ** 3) } });
    const workspace = pod.volumes?.find((v) => v.name === "workspace");
    assert.equal(workspace?.emptyDir?.sizeLimit, String(10 * 1024 ** 3));
    const env = Object.fromEntries(agent!.env!.map((e) => [e.name, e.value]));
    assert.equal(env.CORRAL_RUN_ID, request.runId);
    assert.equal(env.CORRAL_ATTEMPT, "3");
    assert.equal(env.CORRAL_LOG_LEVEL, "debug");
    assert.equal(env.CORRAL_CREDENTIAL_FILE, "/var/run/corral/credential/token");
    const mount = agent!.volumeMounts!.find((m) => m.mountPath === "/var/run/corral/credential");
    assert.equal(mount?.readOnly, true);
  });

  it("hand the launch's trace context to the agent, when there is one", () => {
    const envOf = (r: LaunchRequest) => Object.fromEntries(agentJob(shape, r).spec!.template.spec!.containers[0]!.env!.map((e) => [e.name, e.value]));
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const traced = envOf({ ...request, traceContext: { traceparent, tracestate: "corral=1" } });
    assert.equal(traced.TRACEPARENT, traceparent);
    assert.equal(traced.TRACESTATE, "corral=1");
    assert.equal(envOf(request).TRACEPARENT, undefined);
  });

  it("never put the credential in the Job, only in the Secret", () => {
    const job = JSON.stringify(agentJob(shape, request));
    assert.ok(!job.includes(request.credential));
    const secret = credentialSecret(shape, request);
    assert.equal(secret.metadata?.name, secretName(request.runId, 3));
    assert.equal(secret.immutable, true);
    assert.equal(secret.stringData?.token?.trim(), request.credential);
  });

  it("take the run spec's limits over the defaults", () => {
    const job = agentJob(shape, { ...request, limits: { cpuMillis: 250, memoryBytes: 512 * 1024 ** 2, diskBytes: 1024 ** 3 } });
    const pod = job.spec!.template.spec!;
    assert.deepEqual(pod.containers[0]!.resources?.limits, { cpu: "250m", memory: String(512 * 1024 ** 2) });
    assert.equal(pod.volumes?.find((v) => v.name === "workspace")?.emptyDir?.sizeLimit, String(1024 ** 3));
  });

  it("start from a pod template but keep Corral's guarantees", () => {
    const job = agentJob(
      {
        ...shape,
        podTemplate: {
          metadata: { annotations: { team: "infra" }, labels: { "corral.dev/run-id": "spoofed", tier: "agents" } },
          spec: {
            nodeSelector: { pool: "agents" },
            tolerations: [{ key: "agents", operator: "Exists" }],
            restartPolicy: "Always",
            automountServiceAccountToken: true,
            securityContext: { runAsUser: 2000 },
            containers: [
              {
                name: "agent",
                env: [{ name: "HTTPS_PROXY", value: "http://proxy:3128" }, { name: "CORRAL_RUN_ID", value: "spoofed" }],
                resources: { limits: { cpu: "2", memory: "4Gi" }, requests: { cpu: "500m" } },
                securityContext: { privileged: true, allowPrivilegeEscalation: true },
              },
              { name: "sidecar", image: "proxy:1" },
            ],
          },
        },
      },
      request,
    );
    const template = job.spec!.template;
    const pod = template.spec!;
    assert.equal(template.metadata?.annotations?.team, "infra");
    assert.equal(template.metadata?.labels?.tier, "agents");
    assert.equal(template.metadata?.labels?.["corral.dev/run-id"], request.runId);
    assert.deepEqual(pod.nodeSelector, { pool: "agents" });
    assert.equal(pod.restartPolicy, "Never");
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.securityContext?.runAsUser, 2000);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.deepEqual(pod.containers.map((c) => c.name), ["agent", "sidecar"]);
    const agent = pod.containers[0]!;
    assert.equal(agent.image, "corral-agent:test");
    assert.equal(agent.securityContext?.privileged, false);
    assert.equal(agent.securityContext?.allowPrivilegeEscalation, false);
    const env = agent.env!.filter((e) => e.name === "CORRAL_RUN_ID");
    assert.deepEqual(env, [{ name: "CORRAL_RUN_ID", value: request.runId }]);
    assert.ok(agent.env!.some((e) => e.name === "HTTPS_PROXY"));
    assert.equal(agent.resources?.limits?.cpu, "2");
    assert.equal(agent.resources?.requests?.cpu, "500m");
    assert.equal(agent.resources?.limits?.memory, "4Gi");
  });
});
