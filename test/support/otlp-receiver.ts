import http from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { ExportTraceServiceRequestSchema, ExportTraceServiceResponseSchema } from "@corral/contract/opentelemetry/proto/collector/trace/v1/trace_service_pb.ts";
import type { AnyValue, KeyValue } from "@corral/contract/opentelemetry/proto/common/v1/common_pb.ts";
import { Span_SpanKind } from "@corral/contract/opentelemetry/proto/trace/v1/trace_pb.ts";

/** One received span, flattened: ids in lower-case hex as W3C trace context writes them. */
export interface ReceivedSpan {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  kind: keyof typeof Span_SpanKind;
  attributes: Record<string, unknown>;
  links: { traceId: string; spanId: string }[];
  events: { name: string; attributes: Record<string, unknown> }[];
  status: { code: number; message: string };
  startMs: number;
  endMs: number;
}

export interface OtlpReceiver {
  /** Base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (spans are POSTed to /v1/traces). */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** Export requests that could not be decoded; a test expects none. */
  readonly refused: string[];
  /** Resolves once `predicate` holds for the spans received, or rejects with what arrived after `timeoutMs`. */
  waitFor(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

/**
 * An OTLP/HTTP trace receiver in the test process: real HTTP, the real OTLP protobuf
 * (opentelemetry-proto's definitions, vendored in proto/vendor and generated like the contract),
 * as the SDK's http/protobuf exporter sends it to a collector or Jaeger.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const refused: string[] = [];
  const waiters = new Set<() => void>();
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (chunk: Buffer) => parts.push(chunk));
    req.on("end", () => {
      try {
        if (req.method !== "POST" || req.url !== "/v1/traces") throw new Error(`${req.method} ${req.url}`);
        if (!/^application\/x-protobuf/.test(req.headers["content-type"] ?? "")) throw new Error(`content-type ${req.headers["content-type"]}`);
        let body = Buffer.concat(parts);
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        spans.push(...flatten(fromBinary(ExportTraceServiceRequestSchema, body)));
        res.writeHead(200, { "content-type": "application/x-protobuf" });
        res.end(Buffer.from(toBinary(ExportTraceServiceResponseSchema, create(ExportTraceServiceResponseSchema))));
        for (const wake of waiters) wake();
      } catch (error) {
        refused.push((error as Error).message);
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    refused,
    async waitFor(predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(spans)) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`spans did not arrive in ${timeoutMs} ms; got: ${spans.map((s) => `${s.service}:${s.name}`).join(", ")}`);
        await new Promise<void>((resolve) => {
          const wake = () => {
            waiters.delete(wake);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(wake, Math.min(left, 200));
          waiters.add(wake);
        });
      }
      return spans;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function flatten(request: ReturnType<typeof fromBinary<typeof ExportTraceServiceRequestSchema>>): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans) {
    const resource = attributesOf(resourceSpans.resource?.attributes ?? []);
    for (const scopeSpans of resourceSpans.scopeSpans) {
      for (const span of scopeSpans.spans) {
        out.push({
          service: String(resource["service.name"] ?? ""),
          scope: scopeSpans.scope?.name ?? "",
          traceId: hex(span.traceId),
          spanId: hex(span.spanId),
          parentSpanId: hex(span.parentSpanId),
          name: span.name,
          kind: KIND_NAMES.get(span.kind) ?? "UNSPECIFIED",
          attributes: attributesOf(span.attributes),
          links: span.links.map((l) => ({ traceId: hex(l.traceId), spanId: hex(l.spanId) })),
          events: span.events.map((e) => ({ name: e.name, attributes: attributesOf(e.attributes) })),
          status: { code: span.status?.code ?? 0, message: span.status?.message ?? "" },
          startMs: Number(span.startTimeUnixNano / 1_000_000n),
          endMs: Number(span.endTimeUnixNano / 1_000_000n),
        });
      }
    }
  }
  return out;
}

const KIND_NAMES = new Map(Object.entries(Span_SpanKind).map(([name, value]) => [value as number, name as keyof typeof Span_SpanKind]));
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

function attributesOf(list: KeyValue[]): Record<string, unknown> {
  return Object.fromEntries(list.map((kv) => [kv.key, valueOf(kv.value)]));
}

function valueOf(value: AnyValue | undefined): unknown {
  const v = value?.value;
  if (!v?.case) return undefined;
  switch (v.case) {
    case "intValue":
      return Number(v.value);
    case "arrayValue":
      return v.value.values.map(valueOf);
    case "kvlistValue":
      return attributesOf(v.value.values);
    case "bytesValue":
      return hex(v.value);
    default:
      return v.value;
  }
}
