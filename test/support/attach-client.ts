import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  AttachRequestSchema,
  RunnerService,
  type AttachResponse,
} from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { createAsyncQueue } from "@corral/plumbing/async-queue.ts";

type Request = MessageInitShape<typeof AttachRequestSchema>;

/**
 * A scriptable agent end of an Attach stream for tests: send messages, then wait for the
 * responses you expect, or for the stream's end and its status.
 */
export function openAttach(baseUrl: string) {
  const client: Client<typeof RunnerService> = createClient(RunnerService, createGrpcTransport({ baseUrl }));
  const requests = createAsyncQueue<ReturnType<typeof create<typeof AttachRequestSchema>>>();
  const received: AttachResponse[] = [];
  let waiters: (() => void)[] = [];
  let ended: ConnectError | null | undefined; // undefined: open; null: ended OK
  const wakeAll = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const abort = new AbortController();
  void (async () => {
    try {
      for await (const response of client.attach(requests, { signal: abort.signal })) {
        received.push(response);
        wakeAll();
      }
      ended = null;
    } catch (error) {
      ended = ConnectError.from(error);
    }
    wakeAll();
  })();

  const until = async <T>(check: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      if (ended !== undefined) throw new Error(`stream ended (${ended?.message ?? "ok"}) while waiting for ${what}; got ${received.map((r) => r.message.case)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${received.map((r) => r.message.case)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };

  return {
    received,
    send(message: Request["message"]): void {
      requests.push(create(AttachRequestSchema, { message }));
    },
    hello(runId: string, attempt: number, credential: string, extra: { protocolMin?: number; protocolMax?: number; instanceId?: string } = {}): void {
      this.send({
        case: "hello",
        value: { runId, attempt, credential, protocolMin: extra.protocolMin ?? 1, protocolMax: extra.protocolMax ?? 1, agentVersion: "test", instanceId: extra.instanceId ?? "" },
      });
    },
    event(sequence: bigint, payload: NonNullable<Request["message"]> extends infer M ? (M extends { case: "event"; value: infer V } ? V extends { payload?: infer P } ? P : never : never) : never): void {
      this.send({ case: "event", value: { sequence, time: timestampNow(), payload } });
    },
    /** The first response of a kind after `from` responses. */
    async next<K extends NonNullable<AttachResponse["message"]["case"]>>(kind: K, from = 0, timeoutMs?: number) {
      const message = await until(() => received.slice(from).find((r) => r.message.case === kind)?.message, kind, timeoutMs);
      return (message as unknown as { value: Extract<AttachResponse["message"], { case: K }>["value"] }).value as Extract<AttachResponse["message"], { case: K; value: unknown }>["value"];
    },
    /** Waits for an ack covering `sequence`. */
    acked(sequence: bigint, timeoutMs?: number) {
      return until(
        () => received.some((r) => r.message.case === "ack" && r.message.value.sequence >= sequence) || undefined,
        `ack ${sequence}`,
        timeoutMs,
      );
    },
    /** Resolves with the stream's final error, or null if it ended OK. */
    async ended(timeoutMs = 10_000): Promise<ConnectError | null> {
      await until(() => (ended === undefined ? undefined : true), "end of stream", timeoutMs).catch((e) => {
        if (ended === undefined) throw e;
      });
      return ended ?? null;
    },
    close(): void {
      requests.close();
    },
    abort(): void {
      abort.abort();
    },
  };
}
