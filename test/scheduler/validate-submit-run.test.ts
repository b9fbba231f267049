import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Runtime, SubmitRunRequestSchema, type SubmitRunRequest } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { submitRunLimits } from "@corral/scheduler/runs/submit-run-limits.ts";
import { validateSubmitRun } from "@corral/scheduler/runs/validate-submit-run.ts";
import { durationOfMs, testDefaults } from "./submit-run-arbitraries.ts";
import { violationsOf, type Violation } from "./submit-run-expectations.ts";

const runId = "0b5e5f4c-8a4e-4f61-9d7a-2f1f8c3e6a10";
const minute = 60_000;

type SpecInit = MessageInitShape<typeof RunSpecSchema>;

function request(spec: SpecInit = {}, rest: { runtime?: Runtime; requestId?: string } = {}): SubmitRunRequest {
  const minimal: SpecInit = {
    repositoryUrl: "https://git.example/org/app.git",
    baseRef: "main",
    agent: { commandTemplate: "goose run --instructions {prompt_file}", prompt: "Fix the typo\nin README.md" },
  };
  // Init shapes are a union with full messages, which TypeScript will not spread as one.
  return create(SubmitRunRequestSchema, { ...rest, spec: { ...minimal, ...spec } as SpecInit });
}

function violationsFor(submission: SubmitRunRequest): Violation[] {
  try {
    validateSubmitRun(submission, testDefaults, runId);
  } catch (error) {
    return violationsOf(error);
  }
  return assert.fail("expected INVALID_ARGUMENT");
}

const fieldsOf = (submission: SubmitRunRequest) => violationsFor(submission).map((v) => v.field).sort();
const accepts = (submission: SubmitRunRequest) => validateSubmitRun(submission, testDefaults, runId);

/** The one violation of a request that has exactly one bad field. */
function onlyViolation(submission: SubmitRunRequest): Violation {
  const violations = violationsFor(submission);
  assert.equal(violations.length, 1, JSON.stringify(violations));
  return violations[0]!;
}

describe("validateSubmitRun", () => {
  it("resolves every default of a minimal request", () => {
    assert.deepEqual(accepts(request()), {
      runtime: testDefaults.runtime,
      requestId: undefined,
      spec: {
        repositoryUrl: "https://git.example/org/app.git",
        baseRef: "main",
        branch: `corral/${runId}`,
        agent: { commandTemplate: "goose run --instructions {prompt_file}", prompt: "Fix the typo\nin README.md" },
        validationSteps: [],
        timeouts: testDefaults.timeouts,
        limits: {},
        artifactGlobs: [],
        commit: { authorName: testDefaults.commitAuthor.name, authorEmail: testDefaults.commitAuthor.email, message: "Fix the typo" },
        env: {},
        labels: {},
      },
    });
  });

  it("keeps what the client chose", () => {
    const result = accepts(
      request(
        {
          branch: "fix/typo",
          validationSteps: [{ name: "test", command: "npm test", timeout: durationOfMs(5 * minute) }, { name: "lint", command: "npm run lint" }],
          timeouts: { run: durationOfMs(90 * minute), step: durationOfMs(20 * minute), clone: durationOfMs(minute), grace: durationOfMs(10_000) },
          limits: { cpuMillis: 2000, memoryBytes: 4n * 1024n ** 3n },
          commit: { authorName: "Ada", authorEmail: "ada@example.org", message: "docs: fix typo" },
          env: { NODE_ENV: "test" },
          labels: { team: "docs" },
        },
        { runtime: Runtime.DOCKER, requestId: "retry-key-1" },
      ),
    );
    assert.equal(result.runtime, "docker");
    assert.equal(result.requestId, "retry-key-1");
    assert.equal(result.spec.branch, "fix/typo");
    assert.deepEqual(result.spec.timeouts, { runMs: 90 * minute, stepMs: 20 * minute, cloneMs: minute, graceMs: 10_000 });
    assert.deepEqual(result.spec.validationSteps.map((s) => s.timeoutMs), [5 * minute, 20 * minute]);
    assert.deepEqual(result.spec.limits, { cpuMillis: 2000, memoryBytes: 4 * 1024 ** 3 });
    assert.deepEqual(result.spec.commit, { authorName: "Ada", authorEmail: "ada@example.org", message: "docs: fix typo" });
  });

  it("derives the commit subject from the prompt's first non-blank line, cut to a subject's width", () => {
    const long = "é".repeat(submitRunLimits.derivedCommitSubjectLength + 5);
    assert.equal(accepts(request({ agent: { commandTemplate: "x", prompt: `\n   \n  ${long}  \nmore` } })).spec.commit.message, long.slice(0, submitRunLimits.derivedCommitSubjectLength));
    assert.equal(accepts(request({ commit: { message: "  \n" } })).spec.commit.message, "Fix the typo");
  });

  it("clamps default budgets to a shorter run, but refuses explicit ones that do not fit", () => {
    const short = accepts(request({ timeouts: { run: durationOfMs(5 * minute) }, validationSteps: [{ name: "t", command: "true" }] }));
    assert.deepEqual(short.spec.timeouts, { ...testDefaults.timeouts, runMs: 5 * minute, stepMs: 5 * minute, cloneMs: 5 * minute });
    assert.equal(short.spec.validationSteps[0]?.timeoutMs, 5 * minute);
    const tooLong = durationOfMs(5 * minute + 1);
    assert.deepEqual(
      fieldsOf(request({ timeouts: { run: durationOfMs(5 * minute), step: tooLong, clone: tooLong }, validationSteps: [{ name: "t", command: "true", timeout: tooLong }] })),
      ["spec.timeouts.clone", "spec.timeouts.step", "spec.validation_steps[0].timeout"],
    );
  });

  it("names every bad field at once, and only those", () => {
    const bad = request(
      {
        repositoryUrl: "ftp://git.example/app",
        baseRef: "main..dev",
        branch: "-x",
        agent: { commandTemplate: "run {prompt}", prompt: "" },
        validationSteps: [
          { name: "ok", command: "true" },
          { name: "bad name", command: "" },
        ],
        timeouts: { grace: durationOfMs(submitRunLimits.graceMs + 1) },
        limits: { pids: 1 },
        artifactGlobs: ["../etc/passwd"],
        commit: { authorEmail: "nobody" },
        env: { GIT_DIR: "/tmp" },
        labels: { "-bad-": "x" },
      },
      { runtime: 42 as Runtime, requestId: "has space" },
    );
    assert.deepEqual(fieldsOf(bad), [
      "request_id",
      "runtime",
      "spec.agent.command_template",
      "spec.agent.prompt",
      "spec.artifact_globs[0]",
      "spec.base_ref",
      "spec.branch",
      "spec.commit.author_email",
      'spec.env["GIT_DIR"]',
      'spec.labels["-bad-"]',
      "spec.limits.pids",
      "spec.repository_url",
      "spec.timeouts.grace",
      "spec.validation_steps[1].command",
      "spec.validation_steps[1].name",
    ]);
  });

  it("reports a missing spec as its missing required fields", () => {
    assert.deepEqual(fieldsOf(create(SubmitRunRequestSchema, {})), ["spec.agent.command_template", "spec.agent.prompt", "spec.base_ref", "spec.repository_url"]);
    assert.deepEqual(fieldsOf(request({ agent: undefined })), ["spec.agent.command_template", "spec.agent.prompt"]);
  });

  it("takes a uuid run id from the caller and refuses anything else as a bug", () => {
    assert.equal(validateSubmitRun(request(), testDefaults, runId.toUpperCase()).spec.branch, `corral/${runId}`);
    assert.throws(() => validateSubmitRun(request(), testDefaults, "run-1"), TypeError);
  });

  describe("spec.repository_url", () => {
    it("accepts the forms git clones from", () => {
      for (const url of [
        "https://github.com/org/app.git",
        "http://git.internal:8080/app",
        "ssh://git@github.com/org/app.git",
        "ssh://git@[::1]:2222/srv/app",
        "git://git.example/app",
        "file:///srv/git/app.git",
        "file://localhost/srv/git/app.git",
        "git@github.com:org/app.git",
        "deploy@[2001:db8::1]:srv/app",
        "github.com:org/app.git",
      ]) {
        assert.equal(accepts(request({ repositoryUrl: url })).spec.repositoryUrl, url);
      }
    });

    it("refuses everything else, saying why", () => {
      const cases: [string, RegExp][] = [
        ["", /required/],
        ["ftp://git.example/app", /https:\/\/, http:\/\//],
        ["/srv/git/app", /https:\/\/, http:\/\//],
        ["https://git.example/app b", /whitespace/],
        ["https://git.example/app\n", /whitespace/],
        [`https://git.example/${"a".repeat(submitRunLimits.repositoryUrlLength)}`, /at most/],
        ["https://git.example/app?ref=main", /query/],
        ["https://git.example/app#frag", /query or a fragment/],
        ["https://git.example", /repository path/],
        ["https:///app", /repository path/],
        ["file://remote.example/app", /remote host/],
        ["ssh://-oProxyCommand=touch%20x/app", /must not start with '-'/],
        ["ssh://-oProxyCommand=x@host/app", /must not start with '-'/],
        ["git@host:-upload-pack=x", /must not start with '-'/],
        ["ext::sh%20-c%20touch", /https:\/\//],
        ["git@host:", /path/],
        ["@host:app", /user/],
      ];
      for (const [url, why] of cases) {
        const violation = onlyViolation(request({ repositoryUrl: url }));
        assert.equal(violation.field, "spec.repository_url", url);
        assert.match(violation.description, why, url);
      }
    });

    it("refuses embedded credentials without repeating them", () => {
      const secret = "ghp_S3cr3tT0k3n";
      for (const url of [
        `https://user:${secret}@github.com/org/app.git`,
        `https://${secret}@github.com/org/app.git`,
        `https://x-access-token:${secret}@github.com/org/app.git`,
        `ssh://git:${secret}@github.com/org/app.git`,
        `git:${secret}@github.com:org/app.git`,
        `git:${secret}@github.com?x:app`,
        `https://user:${secret}@[bad/app`,
      ]) {
        let error: unknown;
        try {
          accepts(request({ repositoryUrl: url }));
        } catch (e) {
          error = e;
        }
        const violations = violationsOf(error);
        assert.deepEqual(violations.map((v) => v.field), ["spec.repository_url"], url);
        assert.match(violations[0]!.description, /credentials/, url);
        assert.ok(!(error as Error).message.includes(secret) && !violations[0]!.description.includes(secret), url);
      }
    });
  });

  describe("spec.base_ref and spec.branch", () => {
    it("accept ref names and full object ids", () => {
      for (const ref of ["main", "release/1.x", "v1.2.3", "a".repeat(40), "0123456789abcdef".repeat(4)]) {
        assert.equal(accepts(request({ baseRef: ref, branch: ref })).spec.baseRef, ref);
      }
    });

    it("refuse what git check-ref-format refuses", () => {
      for (const ref of ["a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "-a", "a.lock", "a/", "/a", "a//b", "a.", ".a", "a@{1}", "@", "a\x7f"]) {
        assert.deepEqual(fieldsOf(request({ baseRef: ref, branch: ref })), ["spec.base_ref", "spec.branch"], ref);
      }
      assert.deepEqual(fieldsOf(request({ baseRef: "" })), ["spec.base_ref"]);
    });

    it("refuse HEAD as the branch to create, though it is a fine base", () => {
      assert.equal(accepts(request({ baseRef: "HEAD" })).spec.baseRef, "HEAD");
      assert.match(onlyViolation(request({ branch: "HEAD" })).description, /HEAD/);
    });
  });

  describe("spec.agent", () => {
    it("accepts known placeholders and shell braces that are no placeholders", () => {
      const template = "cd {repo_dir} && claude -p \"$(cat {prompt_file})\" --id {run_id} ${HOME} {a,b} | awk '{print $1}'";
      assert.equal(accepts(request({ agent: { commandTemplate: template, prompt: "p" } })).spec.agent.commandTemplate, template);
    });

    it("names each unknown placeholder", () => {
      const violation = onlyViolation(request({ agent: { commandTemplate: "run {prompt} {workdir} {prompt}", prompt: "p" } }));
      assert.equal(violation.field, "spec.agent.command_template");
      assert.match(violation.description, /unknown placeholders \{prompt\}, \{workdir\}; known: \{prompt_file\}, \{repo_dir\}, \{run_id\}/);
    });

    it("bounds the template and the prompt in bytes, and refuses NUL and blanks", () => {
      const fill = (bytes: number) => "é".repeat(bytes / 2);
      accepts(request({ agent: { commandTemplate: fill(submitRunLimits.commandTemplateBytes), prompt: fill(submitRunLimits.promptBytes) } }));
      assert.deepEqual(
        fieldsOf(request({ agent: { commandTemplate: `${fill(submitRunLimits.commandTemplateBytes)}a`, prompt: `${fill(submitRunLimits.promptBytes)}a` } })),
        ["spec.agent.command_template", "spec.agent.prompt"],
      );
      assert.deepEqual(fieldsOf(request({ agent: { commandTemplate: "run\0", prompt: "a\0b" } })), ["spec.agent.command_template", "spec.agent.prompt"]);
      assert.deepEqual(fieldsOf(request({ agent: { commandTemplate: "run\x07", prompt: "p" } })), ["spec.agent.command_template"]);
      accepts(request({ agent: { commandTemplate: "set -e\r\n\tgoose run {prompt_file}\n", prompt: "p" } }));
      assert.deepEqual(fieldsOf(request({ agent: { commandTemplate: " \n", prompt: " \t\n" } })), ["spec.agent.command_template", "spec.agent.prompt"]);
    });
  });

  describe("spec.validation_steps", () => {
    const step = (name: string, command = "true") => ({ name, command });

    it("checks each step's name", () => {
      const names = ["", "has space", "x".repeat(65), "agent", "Push", ".hidden", "..", "ok", "OK", "fine_1.2-3", "x".repeat(64)];
      const violations = violationsFor(request({ validationSteps: names.map((n) => step(n)) }));
      const byIndex = new Map(violations.map((v) => [Number(/\[(\d+)\]/.exec(v.field)?.[1]), v.description]));
      assert.deepEqual([...byIndex.keys()].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 8]);
      assert.match(byIndex.get(3) ?? "", /built-in step/);
      assert.match(byIndex.get(8) ?? "", /duplicates spec\.validation_steps\[7\]\.name/);
      assert.ok(violations.every((v) => /^spec\.validation_steps\[\d+\]\.name$/.test(v.field)));
    });

    it("requires a command within its byte limit, multi-line but free of other control characters", () => {
      const commands = ["", " \n ", "x".repeat(submitRunLimits.stepCommandBytes + 1), "a\0", "printf '\x1b[31m'", "x".repeat(submitRunLimits.stepCommandBytes), "set -e\r\n\tnpm test\n"];
      assert.deepEqual(
        fieldsOf(request({ validationSteps: commands.map((command, i) => step(`s${i}`, command)) })),
        [0, 1, 2, 3, 4].map((i) => `spec.validation_steps[${i}].command`),
      );
    });

    it("bounds the number of steps", () => {
      const many = (n: number) => Array.from({ length: n }, (_, i) => step(`s${i}`));
      accepts(request({ validationSteps: many(submitRunLimits.validationSteps) }));
      assert.deepEqual(fieldsOf(request({ validationSteps: many(submitRunLimits.validationSteps + 1) })), ["spec.validation_steps"]);
    });
  });

  describe("spec.timeouts", () => {
    const durations = (seconds: bigint, nanos: number) => create(DurationSchema, { seconds, nanos });

    it("refuses zero, negative and malformed Durations", () => {
      const cases = [
        [durations(0n, 0), /positive/],
        [durations(-5n, 0), /positive/],
        [durations(0n, -1), /positive/],
        [durations(1n, -1), /valid Duration/],
        [durations(-1n, 1), /valid Duration/],
        [durations(1n, 1_000_000_000), /valid Duration/],
        [durations(400_000_000_000n, 0), /valid Duration/],
      ] as const;
      for (const [duration, why] of cases) {
        const violation = onlyViolation(request({ timeouts: { step: duration } }));
        assert.equal(violation.field, "spec.timeouts.step");
        assert.match(violation.description, why);
      }
    });

    it("rounds sub-millisecond parts up, so a positive budget never becomes zero", () => {
      const result = accepts(request({ timeouts: { step: durations(0n, 1), grace: durations(2n, 500_001) } }));
      assert.equal(result.spec.timeouts.stepMs, 1);
      assert.equal(result.spec.timeouts.graceMs, 2001);
    });

    it("bounds the run and the grace, and names the bound", () => {
      accepts(request({ timeouts: { run: durationOfMs(submitRunLimits.runTimeoutMs), grace: durationOfMs(submitRunLimits.graceMs) } }));
      const violations = violationsFor(request({ timeouts: { run: durationOfMs(submitRunLimits.runTimeoutMs + 1), grace: durationOfMs(submitRunLimits.graceMs + 1) } }));
      assert.deepEqual(violations, [
        { field: "spec.timeouts.run", description: "must be at most 24h" },
        { field: "spec.timeouts.grace", description: "must be at most 5m" },
      ]);
    });

    it("reports an out-of-range run once, not again on every step", () => {
      assert.deepEqual(
        fieldsOf(request({ timeouts: { run: durationOfMs(submitRunLimits.runTimeoutMs * 2), step: durationOfMs(testDefaults.timeouts.runMs + 1) } })),
        ["spec.timeouts.run"],
      );
    });
  });

  describe("spec.limits", () => {
    const keys = [["cpuMillis", "cpu_millis"], ["memoryBytes", "memory_bytes"], ["pids", "pids"], ["diskBytes", "disk_bytes"]] as const;

    it("takes 0 as the runtime's default and accepts the bounds themselves", () => {
      for (const [key] of keys) {
        const { min, max } = submitRunLimits[key];
        for (const value of [min, max]) {
          const limits = { [key]: key.endsWith("Bytes") ? BigInt(value) : value };
          assert.deepEqual(accepts(request({ limits })).spec.limits, { [key]: value });
        }
      }
    });

    it("refuses values outside the bounds", () => {
      for (const [key, field] of keys) {
        const { min, max } = submitRunLimits[key];
        for (const value of [min - 1, max + 1]) {
          const violation = onlyViolation(request({ limits: { [key]: key.endsWith("Bytes") ? BigInt(value) : value } }));
          assert.equal(violation.field, `spec.limits.${field}`);
          assert.match(violation.description, new RegExp(`between ${min} and ${max}`));
        }
      }
      assert.equal(onlyViolation(request({ limits: { memoryBytes: 2n ** 64n - 1n } })).field, "spec.limits.memory_bytes");
    });
  });

  it("keeps artifact globs inside the repository", () => {
    accepts(request({ artifactGlobs: ["reports/**/*.xml", "coverage/lcov.info", "a..b/*"] }));
    const bad = ["/etc/passwd", "\\\\server\\share", "C:/x", "../x", "a/../../x", "a\\..\\x", "", "a\nb", "x".repeat(submitRunLimits.artifactGlobLength + 1)];
    assert.deepEqual(fieldsOf(request({ artifactGlobs: bad })), bad.map((_, i) => `spec.artifact_globs[${i}]`).sort());
    assert.deepEqual(fieldsOf(request({ artifactGlobs: Array(submitRunLimits.artifactGlobs + 1).fill("*.xml") })), ["spec.artifact_globs"]);
  });

  it("checks the commit author and message", () => {
    accepts(request({ commit: { authorName: "Ada Lovelace", authorEmail: "ada@localhost" } }));
    for (const email of ["ada", "ada@", "@example.org", "a b@example.org", "<ada@example.org>", `${"a".repeat(submitRunLimits.commitAuthorEmailLength)}@x`]) {
      assert.equal(onlyViolation(request({ commit: { authorEmail: email } })).field, "spec.commit.author_email", email);
    }
    for (const name of ["Ada <x>", "Ada\nEvil", "   ", "a".repeat(submitRunLimits.commitAuthorNameLength + 1)]) {
      assert.equal(onlyViolation(request({ commit: { authorName: name } })).field, "spec.commit.author_name", name);
    }
    assert.equal(onlyViolation(request({ commit: { message: "x".repeat(submitRunLimits.commitMessageBytes + 1) } })).field, "spec.commit.message");
    assert.equal(onlyViolation(request({ commit: { message: "a\0b" } })).field, "spec.commit.message");
  });

  describe("spec.env", () => {
    it("accepts POSIX-style names and keeps a __proto__ key as data", () => {
      const env = Object.fromEntries([["_X", "1"], ["NODE_OPTIONS", "--max-old-space-size=4096"], ["__proto__", "kept"]]);
      assert.deepEqual(Object.entries(accepts(request({ env })).spec.env), Object.entries(env));
    });

    it("refuses bad names, reserved prefixes in any case, NUL and oversize values", () => {
      const env = {
        "1X": "v",
        "A-B": "v",
        "": "v",
        CORRAL_TOKEN: "v",
        GIT_SSH_COMMAND: "v",
        git_askpass: "v",
        NUL: "a\0b",
        BIG: "x".repeat(submitRunLimits.envValueBytes + 1),
        [`K${"x".repeat(submitRunLimits.envKeyLength)}`]: "v",
      };
      const violations = violationsFor(request({ env }));
      assert.equal(violations.length, Object.keys(env).length);
      assert.ok(violations.every((v) => v.field.startsWith("spec.env[")));
      assert.match(violations.find((v) => v.field === 'spec.env["git_askpass"]')?.description ?? "", /GIT_/);
      // A long key is cut in the field path rather than echoed whole.
      assert.ok(violations.every((v) => v.field.length < 100));
    });

    it("bounds names and values together", () => {
      const value = "x".repeat(submitRunLimits.envValueBytes);
      const count = Math.floor(submitRunLimits.envTotalBytes / submitRunLimits.envValueBytes);
      const env = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`V${i}`, value]));
      assert.ok(submitRunLimits.envTotalBytes < count * (value.length + 2) + value.length + 2);
      accepts(request({ env: env(count - 1) }));
      assert.deepEqual(fieldsOf(request({ env: env(count + 1) })), ["spec.env"]);
    });
  });

  it("checks label keys, values and count", () => {
    accepts(request({ labels: { team: "docs", "corral.dev/owner": "ada lovelace" } }));
    const labels = { "-x": "v", "x-": "v", "a b": "v", "": "v", [`k${"x".repeat(submitRunLimits.labelKeyLength)}`]: "v", ok: "\n", fine: "x".repeat(submitRunLimits.labelValueLength + 1) };
    assert.equal(violationsFor(request({ labels })).length, Object.keys(labels).length);
    const many = Object.fromEntries(Array.from({ length: submitRunLimits.labels + 1 }, (_, i) => [`l${i}`, "v"]));
    assert.deepEqual(fieldsOf(request({ labels: many })), ["spec.labels"]);
  });

  describe("runtime", () => {
    it("takes the default when unspecified", () => {
      assert.equal(accepts(request()).runtime, testDefaults.runtime);
    });

    it("names an unknown runtime number", () => {
      const violation = onlyViolation(request({}, { runtime: 7 as Runtime }));
      assert.equal(violation.field, "runtime");
      assert.match(violation.description, /unknown runtime 7/);
    });

    it("refuses a runtime not enabled here, listing the enabled ones", () => {
      const violation = onlyViolation(request({}, { runtime: Runtime.KUBERNETES }));
      assert.deepEqual(violation, { field: "runtime", description: `runtime kubernetes is not enabled on this scheduler; enabled: ${testDefaults.enabledRuntimes.join(", ")}` });
    });
  });

  it("checks request_id: at most 128 printable characters without spaces", () => {
    // Characters, not UTF-16 units: each emoji is two.
    const max = "😀".repeat(submitRunLimits.requestIdLength);
    assert.equal(accepts(request({}, { requestId: max })).requestId, max);
    for (const id of [`${max}a`, "a b", "a\tb", "a\u200bb", "a\0"]) {
      assert.equal(onlyViolation(request({}, { requestId: id })).field, "request_id", JSON.stringify(id));
    }
  });
});
