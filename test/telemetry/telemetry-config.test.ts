import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "@corral/plumbing/config.ts";
import { createTelemetry } from "@corral/plumbing/telemetry/create-telemetry.ts";
import { redactSqlLiterals } from "@corral/plumbing/telemetry/instrument-postgres.ts";
import { metricsListen } from "@corral/plumbing/telemetry/serve-metrics.ts";
import { telemetryConfig, telemetryEnv, tracesExport } from "@corral/plumbing/telemetry/telemetry-config.ts";
import { runAttributes, safeRepository } from "@corral/plumbing/telemetry/trace-context.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { controlPlaneConfig } from "@corral/control-plane/config.ts";
import { artifactConfig } from "@corral/artifact/config.ts";
import { agentConfig } from "../../agent/src/config.ts";

const otel = (env: Record<string, string>) => loadConfig(telemetryConfig, env);

describe("telemetry configuration (OTEL_*)", () => {
  it("is off unless an endpoint or an exporter is named, and off when disabled or none", () => {
    assert.equal(tracesExport(otel({})), undefined);
    assert.equal(tracesExport(otel({ OTEL_SERVICE_NAME: "x", OTEL_TRACES_SAMPLER: "always_on" })), undefined);
    assert.equal(tracesExport(otel({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_SDK_DISABLED: "true" })), undefined);
    assert.equal(tracesExport(otel({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_TRACES_EXPORTER: "none" })), undefined);
  });

  it("sends OTLP to the endpoint: /v1/traces appended for http, as is for grpc, the traces endpoint as is", () => {
    assert.deepEqual(tracesExport(otel({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318/" })), {
      exporters: ["otlp"], url: "http://127.0.0.1:4318/v1/traces", protocol: "http/protobuf", headers: {},
    });
    assert.equal(tracesExport(otel({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }))?.url, "http://jaeger:4317");
    assert.equal(tracesExport(otel({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://b:9999/traces" }))?.url, "http://b:9999/traces");
    // An exporter named without an endpoint goes to the spec's default.
    assert.equal(tracesExport(otel({ OTEL_TRACES_EXPORTER: "otlp" }))?.url, "http://localhost:4318/v1/traces");
    assert.deepEqual(tracesExport(otel({ OTEL_TRACES_EXPORTER: "console" }))?.exporters, ["console"]);
    assert.deepEqual(tracesExport(otel({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:4318", OTEL_EXPORTER_OTLP_HEADERS: "api-key=s%3Dcret,x=1" }))?.headers, { "api-key": "s=cret", x: "1" });
  });

  it("refuses bad values naming the variable, in every service's and the agent's configuration", () => {
    for (const shape of [schedulerConfig, controlPlaneConfig, artifactConfig, agentConfig]) {
      for (const [variable, value] of [["OTEL_TRACES_EXPORTER", "jaeger"], ["OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"], ["OTEL_EXPORTER_OTLP_PROTOCOL", "udp"], ["OTEL_TRACES_SAMPLER_ARG", "2"]]) {
        assert.throws(() => loadConfig(shape, { [variable!]: value! }), (error: unknown) => error instanceof ConfigError && error.variables.includes(variable!), `${variable}=${value}`);
      }
    }
  });

  it("passes the OTEL_* settings on to agents, but not the service name", () => {
    const config = otel({ OTEL_SERVICE_NAME: "corral-scheduler-eu", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "otlp,console", OTEL_BSP_SCHEDULE_DELAY: "200" });
    assert.deepEqual(telemetryEnv(config), { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "otlp,console", OTEL_BSP_SCHEDULE_DELAY: "200" });
    // What is passed on reads back the same.
    assert.deepEqual(tracesExport(otel(telemetryEnv(config))), tracesExport(config));
  });

  it("serves metrics on host:port, or not at all (off, the default)", () => {
    assert.equal(metricsListen().parse(undefined), undefined);
    assert.equal(metricsListen().parse("off"), undefined);
    assert.deepEqual(metricsListen().parse("0.0.0.0:9700"), { host: "0.0.0.0", port: 9700 });
    assert.throws(() => loadConfig(schedulerConfig, { CORRAL_SCHEDULER_METRICS_LISTEN: "9700" }), (e: unknown) => e instanceof ConfigError && e.variables.includes("CORRAL_SCHEDULER_METRICS_LISTEN"));
  });

  it("starts nothing when off: the tracer's spans do not record, the meter is a no-op", async () => {
    const telemetry = createTelemetry({ serviceName: "corral-test", config: otel({}) });
    assert.equal(telemetry.tracing, false);
    assert.equal(telemetry.prometheus, undefined);
    const span = telemetry.tracer.startSpan("nothing");
    assert.equal(span.isRecording(), false);
    span.end();
    await telemetry.shutdown();
  });
});

describe("what spans may say about a run", () => {
  it("never a repository's credentials: user, password, token, query and fragment go", () => {
    assert.equal(safeRepository("https://x-access-token:ghs_SECRET@github.com/org/repo.git?token=SECRET#frag"), "https://github.com/org/repo.git");
    assert.equal(safeRepository("https://github.com/org/repo.git"), "https://github.com/org/repo.git");
    assert.equal(safeRepository("file:///srv/git/repo.git"), "file:///srv/git/repo.git");
    assert.equal(safeRepository("git@github.com:org/repo.git"), "github.com:org/repo.git");
    assert.equal(safeRepository("deploy:SECRET@host:org/repo.git"), "host:org/repo.git");
    const attributes = runAttributes({ runId: "r", attempt: 2, runtime: "local", repositoryUrl: "https://u:p4ss@h/r.git" });
    assert.deepEqual(attributes, { "corral.run_id": "r", "corral.attempt": 2, "corral.runtime": "local", "corral.repository": "https://h/r.git" });
  });

  it("records SQL with its literals blanked (MikroORM inlines values: a spec's environment, a token hash)", () => {
    assert.equal(
      redactSqlLiterals(`insert into runs (id, spec) values ('5f0c', '{"env":{"API_KEY":"sk-SECRET"}}'::jsonb) returning *`),
      `insert into runs (id, spec) values ('?', '?'::jsonb) returning *`,
    );
    assert.equal(redactSqlLiterals("select 'it''s', E'a\\'b', $$dollar SECRET$$, $tag$x SECRET$tag$ from t where a = $1"), "select '?', '?', '?', '?' from t where a = $1");
    assert.equal(redactSqlLiterals("select count(*) from runs where status in ($1, $2)"), "select count(*) from runs where status in ($1, $2)");
  });
});
