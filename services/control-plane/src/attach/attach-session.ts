import { Code, ConnectError } from "@connectrpc/connect";
import { fromJson, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate, timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AttachResponseSchema,
  CompletionOutcome,
  ProtocolErrorCode,
  type AttachRequest,
  type Complete,
  type Hello,
} from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { RunEventSchema, type RunEvent } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { ArtifactState, CompletionStatus, RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { CompletionConflictReason, LeaseSupersededSchema, LimitExceededSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import { createAsyncQueue } from "@corral/plumbing/async-queue.ts";
import { credentialMatches, looksLikeCredential } from "@corral/plumbing/credentials.ts";
import { aborted, detail, failedPrecondition, invalidArgument, resourceExhausted, unauthenticated } from "@corral/plumbing/errors.ts";
import type { KeyedRateLimiter } from "@corral/plumbing/keyed-rate-limiter.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { context, type Tracer } from "@opentelemetry/api";
import { suppressTracing } from "@opentelemetry/core";
import type { ControlPlaneConfig } from "../config.ts";
import { startAttachSpan } from "../telemetry/attach-span.ts";
import type { ControlPlaneMetrics } from "../telemetry/control-plane-metrics.ts";
import { LeaseLostError, type AttemptRecord, type AttemptStore } from "./attempt-store.ts";
import type { LeaseRenewer } from "./lease-renewer.ts";
import { encodeEvents } from "./encode-events.ts";
import { createEventColumns, type EventColumns } from "./event-columns.ts";
import { createGroupCommit } from "./group-commit.ts";
import { negotiateVersion } from "./negotiate-version.ts";
import type { SessionRegistry } from "./session-registry.ts";
import { createTokenBucket } from "./token-bucket.ts";

type Outgoing = MessageInitShape<typeof AttachResponseSchema>;

export interface AttachDeps {
  store: AttemptStore;
  registry: SessionRegistry;
  config: ControlPlaneConfig;
  logger: Logger;
  /** The attach span in the run's trace, whose context the welcome hands to the agent. */
  tracer?: Tracer;
  metrics?: ControlPlaneMetrics;
  /** Batches heartbeat lease renewals; without it each heartbeat renews with its own UPDATE. */
  leases?: LeaseRenewer;
  /** Attach attempts per credential; without it attempts are not limited. */
  attachLimiter?: KeyedRateLimiter;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INSTANCE_ID = /^[A-Za-z0-9._-]{1,64}$/;
const COMPLETION_STATUS: Partial<Record<CompletionStatus, string>> = {
  [CompletionStatus.SUCCEEDED]: "succeeded",
  [CompletionStatus.FAILED]: "failed",
  [CompletionStatus.CANCELLED]: "cancelled",
};
const ARTIFACT_STATE: Partial<Record<ArtifactState, string>> = {
  [ArtifactState.COMPLETE]: "complete",
  [ArtifactState.PARTIAL]: "partial",
  [ArtifactState.FAILED]: "failed",
};

/**
 * One attached stream, as an explicit state machine: awaiting hello → attached → (completed)
 * → closed. Incoming messages are consumed by `consume`; everything sent goes through one
 * outgoing queue, which the handler yields from, so acks, cancels, heartbeats and errors can
 * originate anywhere without racing on the response stream.
 */
export function createAttachSession(deps: AttachDeps, signal: AbortSignal) {
  const { store, registry, config, logger } = deps;
  const out = createAsyncQueue<Outgoing>();
  let state: "awaiting_hello" | "attached" | "completed" | "closed" = "awaiting_hello";
  let record: AttemptRecord | undefined;
  let epoch = 0n;
  let protocol = 0;
  // The stream's child logger is made the first time something is logged after the welcome:
  // most streams never log again, and a pino child each is memory held for hours (bench P4).
  let bindings: { runId: string; attempt: number; epoch: string } | undefined;
  let child: Logger | undefined;
  const log = () => (child ??= bindings ? logger.child(bindings) : logger);
  let accepted = 0n; // highest sequence accepted for writing
  let stored = 0n; // highest sequence stored (acked)
  let lastSeen = performance.now();
  let unregister: (() => void) | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  const bucket = createTokenBucket(config.CORRAL_MAX_EVENTS_PER_SECOND, config.CORRAL_MAX_EVENTS_BURST);

  let instanceId = "";

  const fail = (error: unknown) => {
    if (state === "closed") return;
    state = "closed";
    stop();
    if (error instanceof LeaseLostError && record) void closeSuperseded(record.attemptId);
    else out.close(error);
  };
  /**
   * Says who took over, so an agent whose own abandoned attach (a hello processed after it gave
   * up waiting for the welcome) took the lease reconnects instead of stopping as if another agent
   * held its attempt. Looked up when it happens (rare), whichever replica took the lease.
   */
  const closeSuperseded = async (attemptId: string) => {
    const current = await store.currentLease(attemptId).catch(() => ({ epoch, holder: "" }));
    const sameAgent = instanceId !== "" && current.holder === instanceId;
    out.close(
      aborted(
        sameAgent
          ? "this stream was superseded by a later attach of this same agent; reconnect"
          : "this stream was superseded by a newer attach for the same attempt",
        detail(LeaseSupersededSchema, { currentEpoch: current.epoch, sameAgent }),
      ),
    );
  };
  const stop = () => {
    clearInterval(heartbeatTimer);
    unregister?.();
    unregister = undefined;
  };

  const batcher = createGroupCommit({
    newBatch: () => createEventColumns(),
    write: async (batch: EventColumns) => {
      // Not traced: an attempt makes thousands of these writes; corral_events_ingested counts them.
      await context.with(suppressTracing(context.active()), () => store.storeEvents(record!, epoch, config.CORRAL_LEASE_DURATION, batch));
      deps.metrics?.eventsIngested(batch.count);
      stored = batch.last;
      out.push({ message: { case: "ack", value: { sequence: stored } } });
    },
    onError: (error) => {
      if (!(error instanceof LeaseLostError)) log().error({ err: error }, "storing events failed");
      fail(error instanceof LeaseLostError ? error : new ConnectError("could not store events; reconnect and resend", Code.Unavailable));
    },
  });

  async function onHello(hello: Hello): Promise<void> {
    // Counted before anything is looked up, by the credential presented (good or not), so a
    // reconnect storm or a guesser costs no query beyond the limit. Same answer for any run.
    const allowed = deps.attachLimiter?.take(hello.credential) ?? { ok: true };
    if (!allowed.ok) {
      throw resourceExhausted(
        `more than ${config.CORRAL_ATTACH_ATTEMPTS_PER_MINUTE} attach attempts a minute with this credential; retry in ${Math.ceil(allowed.retryAfterMs / 1000)}s`,
        detail(LimitExceededSchema, {
          limit: "attach_attempts_per_minute",
          maximum: BigInt(config.CORRAL_ATTACH_ATTEMPTS_PER_MINUTE),
          retryAfter: durationFromMs(allowed.retryAfterMs),
        }),
      );
    }
    if (hello.instanceId !== "" && !INSTANCE_ID.test(hello.instanceId)) {
      throw invalidArgument([{ field: "hello.instance_id", description: "must be at most 64 of A-Z a-z 0-9 . _ -" }]);
    }
    // Every reason to refuse gets the same answer, so nothing is learned about other runs.
    if (!UUID.test(hello.runId) || hello.attempt < 1 || !looksLikeCredential(hello.credential)) throw unauthenticated();
    const found = await store.find(hello.runId, hello.attempt);
    if (!found || !credentialMatches(hello.credential, found.tokenHash) || found.revokedAt || found.expiresAt.getTime() <= Date.now()) {
      throw unauthenticated();
    }
    const version = negotiateVersion(hello.protocolMin, hello.protocolMax);
    protocol = version;
    if (["completed", "failed", "cancelled"].includes(found.runStatus)) {
      throw failedPrecondition(`run is already ${found.runStatus}`);
    }
    // A client that gave up on this stream (no welcome in time) has already attached again
    // elsewhere: taking the lease for it now would supersede its live stream with a dead one.
    if (signal.aborted) throw new ConnectError("the client cancelled the stream before it was attached", Code.Canceled);
    instanceId = hello.instanceId;
    const lease = await store.takeLease(found, config.CORRAL_LEASE_DURATION, instanceId);
    record = found;
    epoch = lease.epoch;
    const attachSpan = startAttachSpan(deps.tracer, found, lease.epoch);
    accepted = stored = lease.ackedSequence;
    bindings = { runId: found.runId, attempt: found.attempt, epoch: epoch.toString() };
    state = "attached";
    unregister = registry.register({
      attemptId: found.attemptId,
      runId: found.runId,
      epoch,
      supersede: () => fail(new LeaseLostError()),
      cancel: (reason, graceMs) => sendCancel(reason, graceMs),
    });

    const spec = fromJson(RunSpecSchema, found.spec as never, { ignoreUnknownFields: true });
    const runMs = spec.timeouts?.run ? Number(spec.timeouts.run.seconds) * 1000 : 3_600_000;
    const gitToken = config.CORRAL_GIT_TOKEN;
    const prefix = config.CORRAL_GIT_URL_PREFIX;
    out.push({
      message: {
        case: "welcome",
        value: {
          protocolVersion: version,
          ackedSequence: stored,
          heartbeatInterval: durationFromMs(config.CORRAL_HEARTBEAT_INTERVAL),
          leaseDuration: durationFromMs(config.CORRAL_LEASE_DURATION),
          leaseEpoch: epoch,
          assignment: {
            runId: found.runId,
            attempt: found.attempt,
            spec,
            gitCredentials:
              gitToken && prefix && spec.repositoryUrl.startsWith(prefix)
                ? { username: config.CORRAL_GIT_USERNAME, password: gitToken, urlPrefix: prefix }
                : undefined,
            limits: {
              maxMessageBytes: config.CORRAL_MAX_MESSAGE_BYTES,
              maxEventPayloadBytes: config.CORRAL_MAX_EVENT_PAYLOAD_BYTES,
              maxEventsPerSecond: config.CORRAL_MAX_EVENTS_PER_SECOND,
              maxEventsBurst: config.CORRAL_MAX_EVENTS_BURST,
            },
            artifactServiceUrl: config.CORRAL_ARTIFACT_URL,
            traceContext: attachSpan?.traceContext,
            deadline: timestampFromDate(new Date(found.createdAt.getTime() + runMs)),
          },
        },
      },
    });
    logger.info({ ...bindings, protocol: version, resumeAfter: stored.toString(), agentVersion: hello.agentVersion }, "agent attached");
    deps.metrics?.attached();
    attachSpan?.end({ "corral.protocol_version": version, "corral.resume_after": stored.toString() });
    if (found.cancelRequested) sendCancel(found.cancelReason ?? "cancelled", found.cancelGraceMs ?? undefined);
    heartbeatTimer = setInterval(onTick, config.CORRAL_HEARTBEAT_INTERVAL);
  }

  function onTick(): void {
    if (performance.now() - lastSeen > config.CORRAL_LEASE_DURATION) {
      fail(new ConnectError("no heartbeat within the lease; the attempt is considered lost", Code.DeadlineExceeded));
      return;
    }
    out.push({ message: { case: "heartbeat", value: { time: timestampNow(), leaseEpoch: epoch } } });
  }

  function sendCancel(reason: string, graceMs: number | undefined): void {
    if (state !== "attached") return;
    out.push({
      message: {
        case: "cancel",
        value: { reason, grace: graceMs === undefined ? undefined : durationFromMs(graceMs), requestedAt: timestampNow() },
      },
    });
  }

  /** Takes one event; `encoded` is its protobuf binary, which serves both the size limit and storage. */
  function onEvent(event: RunEvent, encoded: Uint8Array): void {
    const size = encoded.byteLength;
    if (size > config.CORRAL_MAX_EVENT_PAYLOAD_BYTES) {
      throw resourceExhausted(
        `event ${event.sequence} is ${size} bytes; the limit is ${config.CORRAL_MAX_EVENT_PAYLOAD_BYTES}`,
        detail(LimitExceededSchema, { limit: "event_payload_bytes", maximum: BigInt(config.CORRAL_MAX_EVENT_PAYLOAD_BYTES), actual: BigInt(size) }),
      );
    }
    const allowed = bucket.take();
    if (!allowed.ok) {
      throw resourceExhausted(
        `more than ${config.CORRAL_MAX_EVENTS_PER_SECOND} events per second (burst ${config.CORRAL_MAX_EVENTS_BURST})`,
        detail(LimitExceededSchema, {
          limit: "events_per_second",
          maximum: BigInt(config.CORRAL_MAX_EVENTS_PER_SECOND),
          retryAfter: durationFromMs(allowed.retryAfterMs),
        }),
      );
    }
    const sequence = event.sequence;
    if (sequence <= accepted) {
      // A replay of something already taken: tell the agent how far it may trim its outbox.
      if (sequence <= stored) out.push({ message: { case: "ack", value: { sequence: stored } } });
      return;
    }
    if (!event.payload.case || !event.time) {
      out.push(protocolError(ProtocolErrorCode.MALFORMED_EVENT, `event ${sequence} has no ${event.time ? "payload" : "time"}`, sequence));
      return;
    }
    if (!validTimestamp(event.time)) {
      out.push(protocolError(ProtocolErrorCode.MALFORMED_EVENT, `event ${sequence} has a time outside 0001-01-01 to 9999-12-31`, sequence));
      return;
    }
    if (sequence !== accepted + 1n) {
      out.push(protocolError(ProtocolErrorCode.OUT_OF_ORDER, `expected event ${accepted + 1n}, got ${sequence}; resend from the ack`, sequence));
      return;
    }
    accepted = sequence;
    batcher.batch().add(event, encoded);
  }

  async function onComplete(complete: Complete): Promise<void> {
    const status = COMPLETION_STATUS[complete.status];
    if (!status || complete.idempotencyKey.length === 0 || complete.idempotencyKey.length > 128) {
      throw invalidArgument([
        ...(status ? [] : [{ field: "complete.status", description: "must be succeeded, failed or cancelled" }]),
        ...(complete.idempotencyKey.length === 0 || complete.idempotencyKey.length > 128
          ? [{ field: "complete.idempotency_key", description: "must be 1 to 128 characters" }]
          : []),
      ]);
    }
    // PostgreSQL text cannot hold NUL: refused here, as the agent's error, not as a failed write.
    const texts: [string, string][] = [
      ["complete.idempotency_key", complete.idempotencyKey],
      ["complete.reason", complete.reason],
      ["complete.result.commit_sha", complete.result?.commitSha ?? ""],
      ["complete.result.branch", complete.result?.branch ?? ""],
      ...(complete.result?.changedFiles ?? []).map((file, i): [string, string] => [`complete.result.changed_files[${i}]`, file]),
    ];
    const withNul = texts.filter(([, text]) => text.includes("\0"));
    if (withNul.length > 0) throw invalidArgument(withNul.map(([field]) => ({ field, description: "must not contain NUL characters" })));
    // Events sent before the completion must be stored before it.
    await batcher.flush();
    const verdict = await store.recordCompletion(record!, epoch, config.CORRAL_LEASE_DURATION, {
      idempotencyKey: complete.idempotencyKey,
      status,
      result: complete.result ? { commitSha: complete.result.commitSha, branch: complete.result.branch, changedFiles: complete.result.changedFiles } : {},
      reason: complete.reason,
      artifactState: ARTIFACT_STATE[complete.artifactState] ?? null,
    });
    if (verdict.outcome === "recorded") state = "completed";
    else log().warn({ why: verdict.why }, "completion refused and recorded as a conflict");
    out.push({
      message: {
        case: "completionAck",
        value: {
          idempotencyKey: complete.idempotencyKey,
          outcome: verdict.outcome === "recorded" ? CompletionOutcome.RECORDED : CompletionOutcome.CONFLICT,
          conflictReason:
            verdict.outcome === "recorded"
              ? CompletionConflictReason.UNSPECIFIED
              : verdict.why === "run_terminal"
                ? CompletionConflictReason.RUN_TERMINAL
                : CompletionConflictReason.DIFFERENT_KEY,
        },
      },
    });
  }

  async function onMessage(request: AttachRequest): Promise<void> {
    lastSeen = performance.now();
    const message = request.message;
    if (state === "awaiting_hello") {
      if (message.case !== "hello") throw failedPrecondition("the first message of a stream must be hello");
      return onHello(message.value);
    }
    switch (message.case) {
      case "event":
        return onEvent(message.value, toBinary(RunEventSchema, message.value));
      case "eventBatch": {
        if (protocol < 2) {
          out.push(protocolError(ProtocolErrorCode.UNEXPECTED_MESSAGE, "event batches need protocol version 2", 0n));
          return;
        }
        const { events } = message.value;
        const encoded = encodeEvents(message.value);
        for (let i = 0; i < events.length; i++) onEvent(events[i]!, encoded[i]!);
        return;
      }
      case "heartbeat":
        if (message.value.leaseEpoch !== 0n && message.value.leaseEpoch !== epoch) {
          throw aborted("the heartbeat names another lease epoch than this stream's", detail(LeaseSupersededSchema, { currentEpoch: epoch }));
        }
        // Batched with every other stream's (one write per interval); not awaited, so the
        // stream's messages keep flowing meanwhile. A lost lease ends the stream as superseded.
        if (deps.leases) deps.leases.renew(record!.attemptId, epoch).catch(fail);
        else await context.with(suppressTracing(context.active()), () => store.renewLease(record!.attemptId, epoch, config.CORRAL_LEASE_DURATION));
        return;
      case "complete":
        return onComplete(message.value);
      case "hello":
        out.push(protocolError(ProtocolErrorCode.UNEXPECTED_MESSAGE, "hello may only be sent once per stream", 0n));
        return;
      default:
        out.push(protocolError(ProtocolErrorCode.UNEXPECTED_MESSAGE, "empty message", 0n));
    }
  }

  signal.addEventListener("abort", () => fail(signal.reason ?? new ConnectError("stream cancelled", Code.Canceled)), { once: true });

  return {
    /** Responses to send, in order; throws the status the stream must end with. */
    outgoing: out,
    /** Reads the agent's messages until the agent closes its side or the stream fails. */
    async consume(requests: AsyncIterable<AttachRequest>): Promise<void> {
      // Bounds a client that opens a stream and says nothing; a hello that has arrived is being
      // looked up (slow under a burst of attaches, not the client's fault) and is not timed out.
      const helloTimer = setTimeout(
        () => state === "awaiting_hello" && fail(new ConnectError("no hello within the deadline", Code.DeadlineExceeded)),
        config.CORRAL_HELLO_TIMEOUT,
      );
      try {
        for await (const request of requests) {
          if (state === "closed") break;
          clearTimeout(helloTimer);
          await onMessage(request);
        }
        if (state !== "closed" && state !== "awaiting_hello") await batcher.flush();
        if (state === "awaiting_hello") throw unauthenticated("the stream ended before hello");
        state = "closed";
        stop();
        out.close();
      } catch (error) {
        fail(error);
      } finally {
        clearTimeout(helloTimer);
      }
    },
  };
}

function protocolError(code: ProtocolErrorCode, message: string, sequence: bigint): Outgoing {
  return { message: { case: "error", value: { code, message, sequence } } };
}

// google.protobuf.Timestamp's documented range, 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

function validTimestamp(time: Timestamp): boolean {
  return time.seconds >= MIN_SECONDS && time.seconds <= MAX_SECONDS && time.nanos >= 0 && time.nanos <= 999_999_999;
}
