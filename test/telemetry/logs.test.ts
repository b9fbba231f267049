import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { TracerProvider } from "@opentelemetry/sdk-trace";
import { createLogger, REDACTED_PATHS } from "@corral/plumbing/logger.ts";

function capture(level = "debug") {
  const lines: Record<string, unknown>[] = [];
  const text: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) {
        text.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { lines, text, logger: createLogger({ name: "test", level, destination }) };
}

describe("structured logs", () => {
  before(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  });

  it("carry the active span's trace and span ids, also after an await, and none outside a span", async () => {
    const { lines, logger } = capture();
    const tracer = new TracerProvider().getTracer("test");
    logger.info("outside");
    let ids: { traceId: string; spanId: string } | undefined;
    await tracer.startActiveSpan("work", async (span) => {
      ids = span.spanContext();
      await new Promise((resolve) => setTimeout(resolve, 5));
      logger.child({ runId: "r1" }).warn("inside");
      span.end();
    });
    assert.equal(lines[0]!.trace_id, undefined);
    assert.equal(lines[0]!.span_id, undefined);
    assert.equal(lines[1]!.trace_id, ids!.traceId);
    assert.equal(lines[1]!.span_id, ids!.spanId);
    assert.equal(lines[1]!.runId, "r1");
    assert.equal(lines[1]!.level, "warn");
  });

  it("carry no ids under a span that is not valid (no tracing)", () => {
    const { lines, logger } = capture();
    context.with(trace.setSpan(context.active(), trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 })), () => logger.info("x"));
    assert.equal(lines[0]!.trace_id, undefined);
  });

  it("take their level from the configuration", () => {
    const { lines, logger } = capture("warn");
    logger.info("dropped");
    logger.debug("dropped");
    logger.warn("kept");
    assert.deepEqual(lines.map((l) => l.msg), ["kept"]);
  });

  it("never carry a secret that the redaction list names: credentials, tokens, authorization, cookies, git passwords, secret settings", () => {
    const { text, logger } = capture();
    const secret = (n: number) => `SECRET-${n}-f3a9`;
    const records: Record<string, unknown>[] = [
      { credential: secret(1), hello: { credential: secret(2) } },
      { token: secret(3), upload: { token: secret(4) }, gitToken: secret(5), config: { gitToken: secret(6) } },
      { password: secret(7), git: { password: secret(8) }, gitCredentials: { username: "x", password: secret(9) } },
      { assignment: { gitCredentials: { password: secret(10) }, git_credentials: secret(33) }, git_credentials: secret(11) },
      { headers: { authorization: `Bearer ${secret(12)}`, cookie: secret(13) }, req: { headers: { authorization: `Bearer ${secret(14)}`, cookie: secret(15) } } },
      { metadata: { authorization: secret(16) }, call: { metadata: { authorization: secret(17) } }, authorization: secret(18) },
      { apiKey: secret(19), secret: secret(20), accessToken: secret(21), refreshToken: secret(22), exporter: { apiKey: secret(23) } },
      { DATABASE_URL: `postgres://u:${secret(24)}@h/db`, databaseUrl: secret(25), config: { CORRAL_GIT_TOKEN: secret(26), CORRAL_ARTIFACT_SERVICE_TOKEN: secret(27) } },
      { CORRAL_GIT_TOKEN: secret(28), OTEL_EXPORTER_OTLP_HEADERS: `api-key=${secret(29)}`, env: { OTEL_EXPORTER_OTLP_TRACES_HEADERS: secret(30) } },
      { spec: { env: { API_KEY: secret(31) }, repositoryUrl: "https://h/r.git" }, run: { spec: { env: { TOKEN: secret(32) } } } },
    ];
    for (const record of records) logger.info(record, "record");
    const all = text.join("\n");
    for (let n = 1; n <= 33; n++) assert.ok(!all.includes(secret(n)), `secret ${n} leaked: ${text.find((t) => t.includes(secret(n)))}`);
    assert.ok(all.includes("https://h/r.git"), "what is not secret stays");
    assert.equal((all.match(/\[redacted\]/g) ?? []).length >= 30, true);
  });

  it("redact every path of the list, whatever the value (a string, an object, a number)", () => {
    const { text, logger } = capture();
    REDACTED_PATHS.forEach((path, i) => {
      for (const value of [`SECRET-path-${i}-s`, { nested: `SECRET-path-${i}-o` }, 4242_0000 + i]) {
        // "*" stands for any key: "upload" here.
        const record = path.split(".").reverse().reduce<unknown>((inner, key) => ({ [key === "*" ? "upload" : key]: inner }), value) as Record<string, unknown>;
        logger.info(record, "record");
      }
    });
    const all = text.join("\n");
    REDACTED_PATHS.forEach((path, i) => {
      for (const leaked of [`SECRET-path-${i}-s`, `SECRET-path-${i}-o`, String(4242_0000 + i)]) assert.ok(!all.includes(leaked), `${path} leaked ${leaked}`);
    });
  });
});
