import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { Runtime, SubmitRunRequestSchema, type SubmitRunRequest } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { ValidationStepSchema, type RunSpec } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { submitRunLimits } from "@corral/scheduler/runs/submit-run-limits.ts";
import type { SchedulerDefaults } from "@corral/scheduler/runs/validated-submission.ts";

const minute = 60_000;
const hour = 60 * minute;

export const testDefaults: SchedulerDefaults = {
  runtime: "local",
  enabledRuntimes: ["local", "docker"],
  timeouts: { runMs: 2 * hour, stepMs: 30 * minute, cloneMs: 10 * minute, graceMs: 30_000 },
  commitAuthor: { name: "Corral", email: "corral@example.invalid" },
};

export function durationOfMs(ms: number): Duration {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}

// ---- valid requests -------------------------------------------------------------------

const lower = "abcdefghijklmnopqrstuvwxyz";
const word = (chars: string, max = 10) => fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: max });
const label = word(lower + "0123456789");
const host = fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => `${labels.join(".")}.example`);
const pathSegment = fc.tuple(label, fc.string({ unit: fc.constantFrom(..."abcXYZ019_-"), maxLength: 8 })).map(([a, b]) => a + b);
const repoPath = fc.array(pathSegment, { minLength: 1, maxLength: 3 }).map((segments) => segments.join("/"));

const repositoryUrl = fc.oneof(
  fc.tuple(host, repoPath).map(([h, p]) => `https://${h}/${p}.git`),
  fc.tuple(host, repoPath).map(([h, p]) => `http://${h}:8080/${p}`),
  fc.tuple(host, repoPath).map(([h, p]) => `ssh://git@${h}:2222/${p}.git`),
  fc.tuple(host, repoPath).map(([h, p]) => `git://${h}/${p}`),
  fc.tuple(host, repoPath).map(([h, p]) => `git@${h}:${p}.git`),
  repoPath.map((p) => `file:///srv/git/${p}.git`),
);

const refName = fc.array(pathSegment, { minLength: 1, maxLength: 3 }).map((segments) => segments.join("/"));
const objectId = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 40, maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 }),
);

/** Text with at least one visible character and no NUL: a fine prompt, message or command. */
const text = fc
  .tuple(fc.string({ maxLength: 30 }), label, fc.string({ unit: "grapheme", maxLength: 60 }))
  .map((parts) => parts.join("").replaceAll("\0", ""));
const command = fc.tuple(fc.constantFrom("npm test", "make lint", "go vet ./...", "pytest -q"), fc.constantFrom("", " && echo ok", "\necho ${HOME}")).map(([a, b]) => a + b);
const commandTemplate = fc
  .subarray(["{prompt_file}", "{repo_dir}", "{run_id}", "${HOME}", "awk '{print $1}'", "{a,b}"])
  .map((parts) => `goose run --instructions ${parts.join(" ")}`);

const stepName = fc
  .tuple(fc.constantFrom(...lower), fc.string({ unit: fc.constantFrom(..."abc123._-XY"), maxLength: 20 }))
  .map(([a, b]) => a + b)
  .filter((name) => !["clone", "agent", "commit", "push"].includes(name.toLowerCase()));
const steps = fc.uniqueArray(stepName, { maxLength: 5, selector: (n) => n.toLowerCase() }).chain((names) =>
  fc.tuple(...names.map((name) => fc.record({ name: fc.constant(name), command, timeout: fc.option(fc.integer({ min: 1, max: hour }).map(durationOfMs), { nil: undefined }) }))),
);

const optionalMs = (min: number, max: number) => fc.option(fc.integer({ min, max }).map(durationOfMs), { nil: undefined });
// A run of at least an hour leaves room for every step and clone budget below.
const timeouts = fc.record({
  run: optionalMs(hour, submitRunLimits.runTimeoutMs),
  step: optionalMs(1, hour),
  clone: optionalMs(1, hour),
  grace: optionalMs(1, submitRunLimits.graceMs),
});

const inBounds = (bounds: { min: number; max: number }) => fc.oneof(fc.constant(0), fc.integer(bounds));
const limits = fc.record({
  cpuMillis: inBounds(submitRunLimits.cpuMillis),
  memoryBytes: inBounds(submitRunLimits.memoryBytes).map(BigInt),
  pids: inBounds(submitRunLimits.pids),
  diskBytes: inBounds(submitRunLimits.diskBytes).map(BigInt),
});

const glob = fc.array(fc.constantFrom("reports", "**", "*.xml", "coverage", "lcov.info", "out"), { minLength: 1, maxLength: 4 }).map((p) => p.join("/"));
const envKey = word("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", 16).filter((k) => /^[A-Z_]/.test(k) && !/^(CORRAL_|GIT_)/.test(k));
const labelKey = fc.tuple(label, fc.string({ unit: fc.constantFrom(..."abc-_./"), maxLength: 10 }), label).map((p) => p.join(""));

const spec = fc.record({
  repositoryUrl,
  baseRef: fc.oneof(refName, objectId, fc.constant("main")),
  branch: fc.oneof(fc.constant(""), refName),
  agent: fc.record({ commandTemplate, prompt: text }),
  validationSteps: steps,
  timeouts,
  limits,
  artifactGlobs: fc.array(glob, { maxLength: 4 }),
  commit: fc.record({
    authorName: fc.oneof(fc.constant(""), word(lower + " ABC", 20).filter((n) => n.trim() !== "")),
    authorEmail: fc.oneof(fc.constant(""), fc.tuple(label, host).map(([l, h]) => `${l}@${h}`)),
    message: fc.oneof(fc.constant(""), text),
  }),
  env: fc.dictionary(envKey, fc.string({ maxLength: 40 }).map((v) => v.replaceAll("\0", "")), { maxKeys: 5 }),
  labels: fc.dictionary(labelKey, fc.string({ unit: fc.constantFrom(..."abc xyz-1"), maxLength: 20 }), { maxKeys: 5 }),
});

/** A request every validator must accept under testDefaults. */
export const validRequest: fc.Arbitrary<SubmitRunRequest> = fc
  .record({
    spec,
    runtime: fc.constantFrom(Runtime.UNSPECIFIED, Runtime.LOCAL, Runtime.DOCKER),
    requestId: fc.oneof(fc.constant(""), fc.uuid(), fc.string({ unit: fc.constantFrom(..."abc-_:/.#é"), minLength: 1, maxLength: submitRunLimits.requestIdLength })),
  })
  .map((init) => create(SubmitRunRequestSchema, init as MessageInitShape<typeof SubmitRunRequestSchema>));

// ---- hostile values -------------------------------------------------------------------

const boundaryLengths = [63, 64, 65, 128, 129, 254, 255, 256, 257, 1025, 2049, 8193, 32_769, 65_537, 262_145];
/** Strings of every awkward kind: empty, control characters, git syntax, sizes at the limits. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(..."a/.-@{}~^:?*[\\ \t\n\0\x7f\u0085é{}$_"), maxLength: 30 }),
  fc.constantFrom("", " ", "\0", "..", "/abs", "-x", "HEAD", "@", "x.lock", "{unknown}", "CORRAL_X", "GIT_DIR", "git_dir", "agent", "AGENT", ".hidden", "__proto__"),
  fc.tuple(fc.constantFrom(...boundaryLengths), fc.constantFrom("a", "é", "😀")).map(([n, c]) => c.repeat(n)),
);

/** Durations including invalid ones: nanos out of range, mixed signs, zero, huge. */
export const hostileDuration: fc.Arbitrary<Duration> = fc.oneof(
  fc
    .record({
      seconds: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt({ min: -2n, max: 200_000n })),
      nanos: fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.integer({ min: -1_000_000_000, max: 1_000_000_000 })),
    })
    .map((init) => create(DurationSchema, init)),
  // Plausible ones, on both sides of every bound.
  fc.integer({ min: 0, max: 30 * hour }).map(durationOfMs),
);

/** A mutation of one part of a request, and the violation fields it may legitimately cause. */
export interface Mutation {
  name: string;
  affects: readonly string[];
  apply(request: SubmitRunRequest): void;
}

// A spec mutation after "spec unset" has nothing left to change.
const mutation = <T>(name: string, affects: readonly string[], value: fc.Arbitrary<T>, apply: (spec: RunSpec, value: T) => void) =>
  value.map((v): Mutation => ({ name: describe(name, v), affects, apply: (r) => r.spec && apply(r.spec, v) }));
const requestMutation = <T>(name: string, affects: readonly string[], value: fc.Arbitrary<T>, apply: (request: SubmitRunRequest, value: T) => void) =>
  value.map((v): Mutation => ({ name: describe(name, v), affects, apply: (r) => apply(r, v) }));
const describe = (name: string, value: unknown) => `${name} = ${fc.stringify(value)}`.slice(0, 200);

const index = fc.nat();
const uint32 = fc.oneof(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 100_000 }));
const uint64 = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 41n }));
const atStep = (spec: RunSpec, i: number) => spec.validationSteps[i % Math.max(1, spec.validationSteps.length)];

export const anyMutation: fc.Arbitrary<Mutation> = fc.oneof(
  mutation("repository_url", ["spec.repository_url"], hostileString, (s, v) => (s.repositoryUrl = v)),
  mutation("base_ref", ["spec.base_ref"], hostileString, (s, v) => (s.baseRef = v)),
  mutation("branch", ["spec.branch"], hostileString, (s, v) => (s.branch = v)),
  mutation("command_template", ["spec.agent.command_template"], hostileString, (s, v) => s.agent && (s.agent.commandTemplate = v)),
  mutation("prompt", ["spec.agent.prompt"], hostileString, (s, v) => s.agent && (s.agent.prompt = v)),
  mutation("agent unset", ["spec.agent."], fc.constant(undefined), (s) => (s.agent = undefined)),
  requestMutation("spec unset", ["spec."], fc.constant(undefined), (r) => (r.spec = undefined)),
  mutation("step name", ["spec.validation_steps"], fc.tuple(index, hostileString), (s, [i, v]) => {
    const step = atStep(s, i);
    if (step) step.name = v;
  }),
  mutation("step command", ["spec.validation_steps"], fc.tuple(index, hostileString), (s, [i, v]) => {
    const step = atStep(s, i);
    if (step) step.command = v;
  }),
  mutation("step timeout", ["spec.validation_steps"], fc.tuple(index, hostileDuration), (s, [i, v]) => {
    const step = atStep(s, i);
    if (step) step.timeout = v;
  }),
  mutation("many steps", ["spec.validation_steps"], fc.integer({ min: 1, max: 40 }), (s, n) => {
    for (let i = 0; i < n; i++) s.validationSteps.push(create(ValidationStepSchema, { name: `extra-${i}`, command: "true" }));
  }),
  mutation("timeouts.run", ["spec.timeouts.", "spec.validation_steps"], hostileDuration, (s, v) => (s.timeouts!.run = v)),
  mutation("timeouts.step", ["spec.timeouts."], hostileDuration, (s, v) => (s.timeouts!.step = v)),
  mutation("timeouts.clone", ["spec.timeouts."], hostileDuration, (s, v) => (s.timeouts!.clone = v)),
  mutation("timeouts.grace", ["spec.timeouts."], hostileDuration, (s, v) => (s.timeouts!.grace = v)),
  mutation("limits.cpu_millis", ["spec.limits."], uint32, (s, v) => (s.limits!.cpuMillis = v)),
  mutation("limits.pids", ["spec.limits."], uint32, (s, v) => (s.limits!.pids = v)),
  mutation("limits.memory_bytes", ["spec.limits."], uint64, (s, v) => (s.limits!.memoryBytes = v)),
  mutation("limits.disk_bytes", ["spec.limits."], uint64, (s, v) => (s.limits!.diskBytes = v)),
  mutation("artifact glob", ["spec.artifact_globs"], fc.array(hostileString, { minLength: 1, maxLength: 70 }), (s, v) => s.artifactGlobs.push(...v)),
  mutation("commit.author_name", ["spec.commit."], hostileString, (s, v) => (s.commit!.authorName = v)),
  mutation("commit.author_email", ["spec.commit."], hostileString, (s, v) => (s.commit!.authorEmail = v)),
  mutation("commit.message", ["spec.commit."], hostileString, (s, v) => (s.commit!.message = v)),
  mutation("env entry", ["spec.env"], fc.tuple(hostileString, hostileString), (s, [k, v]) => {
    Object.defineProperty(s.env, k, { value: v, enumerable: true, writable: true, configurable: true });
  }),
  mutation("labels entry", ["spec.labels"], fc.tuple(hostileString, hostileString), (s, [k, v]) => {
    Object.defineProperty(s.labels, k, { value: v, enumerable: true, writable: true, configurable: true });
  }),
  requestMutation("runtime", ["runtime"], fc.integer({ min: -3, max: 8 }), (r, v) => (r.runtime = v as Runtime)),
  requestMutation("request_id", ["request_id"], hostileString, (r, v) => (r.requestId = v)),
);

// ---- URLs with a secret in them ----------------------------------------------------------

/** A password distinctive enough that finding it anywhere means it leaked. */
export const secret = fc.string({ unit: fc.constantFrom(..."abcXYZ0189-_.~"), minLength: 6, maxLength: 16 }).map((s) => `S3cr3t${s}`);

/** Every way a client might put a credential in a repository URL, well-formed or not. */
export const urlWithSecret = fc
  .tuple(secret, host, repoPath, fc.constantFrom("", " ", "\t", "?x=1", "[", "%zz", "::"))
  .chain(([password, h, p, noise]) =>
    fc.constantFrom(
      `https://user:${password}@${h}/${p}.git`,
      `https://${password}@${h}/${p}.git`,
      `http://:${password}@${h}/${p}`,
      `ssh://git:${password}@${h}/${p}.git`,
      `git://u:${password}@${h}/${p}`,
      `file://u:${password}@localhost/${p}`,
      `git:${password}@${h}:${p}.git`,
      `https://user:${password}@${h}${noise}/${p}`,
      `https://user:${password}@${noise}${h}/${p}`,
      `ftp://user:${password}@${h}/${p}`,
      `user:${password}@${h}${noise}:${p}`,
    ).map((url) => ({ url, password })),
  );
