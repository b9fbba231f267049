import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { LimitExceededSchema, LeaseSupersededSchema, ProtocolVersionMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";
import type { ArtifactState, CompletionStatus } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import {
  AttachRequestSchema,
  CompleteSchema,
  CompletionOutcome,
  ProtocolErrorCode,
  RunnerService,
  type Assignment,
  type AttachRequest,
  type Cancel,
  type CompletionAck,
  type ProtocolError,
  type Welcome,
} from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import type { Logger } from "@corral/plumbing/logger.ts";
import { createNotifier } from "./notifier.ts";
import { createOutbox, logChunkBytes, type EventPayload, type LogOutput, type Outbox, type OutboxOptions } from "./outbox.ts";
import { createPacer, type Pacer } from "./pacer.ts";
import { SessionFailure } from "./session-failure.ts";

/** Runner protocol versions this agent speaks. */
export const AGENT_PROTOCOL = { min: 1, max: 2 } as const;
/** Most events per batch (protocol 2), and at most this share of the message limit. */
const BATCH_EVENTS = 500;
const BATCH_SHARE_OF_MESSAGE_LIMIT = 0.5;
/** Optional protocol features this agent supports. */
export const AGENT_CAPABILITIES = ["log-chunks"] as const;

/**
 * starting  → connecting, until the first welcome brings the assignment;
 * attached  → the assignment is known; the attempt has not begun;
 * running   → the attempt runs and emits events;
 * draining  → the completion is out; waiting for every event and the completion to be acked;
 * stopped   → the completion was acknowledged and the stream closed (success, whatever the run's status);
 * failed    → ended for good (see SessionFailure).
 * Reconnecting is not a state of its own: a stream can be lost and replaced in any live state,
 * and the outbox makes that invisible to the attempt.
 */
export type SessionState = "starting" | "attached" | "running" | "draining" | "stopped" | "failed";

const TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = {
  starting: ["attached", "failed"],
  attached: ["running", "draining", "failed"],
  running: ["draining", "failed"],
  draining: ["stopped", "failed"],
  stopped: [],
  failed: [],
};

export interface AgentSessionOptions {
  controlPlaneUrl: string;
  runId: string;
  attempt: number;
  /** Sent in hello only; never logged. */
  credential: string;
  agentVersion: string;
  logger: Logger;
  /** Aborting it ends the session at once, as failed ("aborted"). */
  signal?: AbortSignal;
  reconnect?: {
    /** First backoff delay; doubles per failed try up to `maxDelayMs`, each drawn with full jitter. */
    initialDelayMs?: number;
    maxDelayMs?: number;
    /** Without a welcome for this long, the session fails as unreachable. */
    giveUpAfterMs?: number;
  };
  /** Bounds of the outbox; see createOutbox. */
  outbox?: Omit<OutboxOptions, "chunkBytes">;
  /** Longest wait for a welcome after opening a stream before trying another. */
  welcomeTimeoutMs?: number;
  /** Client interceptors, such as tracing (and, in tests, counting attach calls). */
  interceptors?: Interceptor[];
}

/** What the first welcome brought. */
export interface AttachedAssignment {
  assignment: Assignment;
  protocolVersion: number;
  leaseEpoch: bigint;
}

/** A cancel pushed by the control plane. */
export interface CancelNotice {
  reason: string;
  /** The grace the control plane gives the running step; undefined means the spec's. */
  graceMs: number | undefined;
}

/** The attempt's outcome, as sent in Complete. */
export interface Completion {
  status: CompletionStatus;
  result?: { commitSha: string; branch: string; changedFiles: string[] };
  reason?: string;
  artifactState?: ArtifactState;
}

export type SessionResult = { state: "stopped"; outcome: CompletionOutcome } | { state: "failed"; error: SessionFailure };

type AttachRequestInit = MessageInitShape<typeof AttachRequestSchema>;
type ConnectionResult =
  | { kind: "done" }
  | { kind: "final"; error: SessionFailure }
  | { kind: "retry"; welcomed: boolean; error: Error; retryAfterMs?: number };

/** Asks for the current stream to be replaced; not an error of the session. */
class Reconnect extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Reconnect";
  }
}

/** Longest text in a reason or message field, so a non-log event always fits the stream's limits. */
const MAX_TEXT = 2048;

/**
 * The agent's end of `RunnerService/Attach`: one logical session per attempt over as many
 * streams as it takes. It says hello, takes the assignment from the first welcome, sends the
 * outbox's events paced to the stream's limits, heartbeats with its lease epoch, surfaces a
 * pushed cancel once, and sends the completion (one idempotency key per attempt) until it is
 * acknowledged. A lost stream is replaced with exponential backoff and full jitter; each new
 * welcome says how far the control plane got, and the outbox resends from there.
 */
export function createAgentSession(options: AgentSessionOptions) {
  const log = options.logger.child({ runId: options.runId, attempt: options.attempt });
  const initialDelayMs = options.reconnect?.initialDelayMs ?? 250;
  const maxDelayMs = options.reconnect?.maxDelayMs ?? 10_000;
  const giveUpAfterMs = options.reconnect?.giveUpAfterMs ?? 600_000;
  const welcomeTimeoutMs = options.welcomeTimeoutMs ?? 30_000;
  const hello = {
    case: "hello",
    value: {
      runId: options.runId,
      attempt: options.attempt,
      credential: options.credential,
      protocolMin: AGENT_PROTOCOL.min,
      protocolMax: AGENT_PROTOCOL.max,
      agentVersion: options.agentVersion,
      capabilities: [...AGENT_CAPABILITIES],
      // Tells this session's own streams apart from another agent's: see the Aborted case of classify.
      instanceId: randomUUID(),
    },
  } as const satisfies AttachRequestInit["message"];

  // One HTTP/2 connection manager owned by the session, so ending the session closes it.
  const connection = new Http2SessionManager(options.controlPlaneUrl);
  const client = createClient(
    RunnerService,
    createGrpcTransport({ baseUrl: options.controlPlaneUrl, sessionManager: connection, interceptors: options.interceptors }),
  );

  const stop = new AbortController(); // aborted when the session ends, either way
  const wake = createNotifier(); // the sender re-checks what to send
  const idempotencyKey = randomUUID();
  const cancelListeners = new Set<(notice: CancelNotice) => void>();
  const started = Promise.withResolvers<AttachedAssignment>();
  const finished = Promise.withResolvers<SessionResult>();
  const completed = Promise.withResolvers<CompletionOutcome>();
  started.promise.catch(() => {}); // observed by start(); avoids an unhandled rejection if never called
  completed.promise.catch(() => {});

  let state: SessionState = "starting";
  let failure: SessionFailure | undefined;
  let attached: AttachedAssignment | undefined;
  let outbox: Outbox | undefined;
  let cancel: CancelNotice | undefined;
  let completion: { request: AttachRequestInit["message"] & { case: "complete" }; outcome?: CompletionOutcome } | undefined;
  let streams = 0;
  let loop: Promise<void> | undefined;

  const isOver = () => state === "stopped" || state === "failed";

  function transition(to: SessionState): void {
    if (!TRANSITIONS[state].includes(to)) throw new Error(`agent session: no transition from ${state} to ${to}`);
    log.debug({ from: state, to }, "session state changed");
    state = to;
  }

  function fail(error: SessionFailure): void {
    if (isOver()) return;
    transition("failed");
    failure = error;
    log.error({ kind: error.kind, code: error.code === undefined ? undefined : Code[error.code] }, `session failed: ${error.message}`);
    stop.abort(error);
    started.reject(error);
    completed.reject(error);
    finished.resolve({ state: "failed", error });
  }

  function succeed(outcome: CompletionOutcome): void {
    transition("stopped");
    log.info({ outcome: nameOf(CompletionOutcome, outcome) }, "completion acknowledged; session stopped");
    stop.abort();
    finished.resolve({ state: "stopped", outcome });
  }

  options.signal?.addEventListener("abort", () => fail(new SessionFailure("aborted", "the agent stopped the session")), { once: true });

  async function runLoop(): Promise<void> {
    let failures = 0;
    let lostSince = performance.now();
    try {
      while (!isOver()) {
        const result = await connectOnce();
        if (isOver()) return;
        if (result.kind === "done") return succeed(completion!.outcome!);
        if (result.kind === "final") return fail(result.error);
        if (result.welcomed) {
          failures = 0;
          lostSince = performance.now();
        }
        const downMs = performance.now() - lostSince;
        if (downMs >= giveUpAfterMs) {
          return fail(new SessionFailure("unreachable", `no stream to the control plane for ${Math.round(downMs / 1000)} s; last error: ${result.error.message}`));
        }
        // Full jitter: a fleet of agents cut off together does not come back together.
        const delayMs = result.retryAfterMs ?? Math.random() * Math.min(maxDelayMs, initialDelayMs * 2 ** failures);
        failures += 1;
        log.warn({ reason: result.error.message, retryInMs: Math.round(delayMs), state }, "stream to the control plane lost; reconnecting");
        await sleep(delayMs, undefined, { signal: stop.signal }).catch(() => {});
      }
    } catch (error) {
      fail(new SessionFailure("protocol", `agent session crashed: ${(error as Error).message}`));
    } finally {
      connection.abort();
      // Its spill file, if it opened one: nothing is sent after this.
      outbox?.close();
    }
  }

  async function connectOnce(): Promise<ConnectionResult> {
    streams += 1;
    const conn = new AbortController();
    const onStop = () => conn.abort(stop.signal.reason);
    stop.signal.addEventListener("abort", onStop, { once: true });
    const control: AttachRequestInit[] = []; // heartbeats go before events
    let welcomed = false;
    let completeSent = false;
    let endRequested = false;
    let pacer: Pacer | undefined;
    let epoch = 0n;
    let lastHeard = performance.now();
    let heartbeatTimer: NodeJS.Timeout | undefined;
    const welcomeTimer = setTimeout(() => conn.abort(new Reconnect(`no welcome within ${welcomeTimeoutMs} ms`)), welcomeTimeoutMs);

    async function* requests(): AsyncGenerator<AttachRequest> {
      yield create(AttachRequestSchema, { message: hello });
      for (;;) {
        if (conn.signal.aborted) return;
        const next = control.shift();
        if (next) {
          yield create(AttachRequestSchema, next);
          continue;
        }
        if (welcomed && outbox && pacer) {
          if (endRequested) return; // closes our side; the control plane then ends the stream
          if (!outbox.caughtUp) {
            const waitMs = pacer.take();
            if (waitMs > 0) {
              await sleep(waitMs, undefined, { signal: conn.signal }).catch(() => {});
              continue;
            }
            const firstBytes = outbox.nextBytes() ?? 0;
            const event = outbox.takeNext();
            if (event) {
              if (attached!.protocolVersion < 2) {
                yield create(AttachRequestSchema, { message: { case: "event", value: event } });
                continue;
              }
              // Protocol 2: what is ready goes in one message, within the pace and half the
              // message limit, saving the per-message cost on both sides.
              const events = [event];
              const budget = (attached!.assignment.limits?.maxMessageBytes || 4 * 1024 * 1024) * BATCH_SHARE_OF_MESSAGE_LIMIT;
              let size = firstBytes;
              for (let next = outbox.nextBytes(); next !== undefined && events.length < BATCH_EVENTS && size + next + 16 <= budget; next = outbox.nextBytes()) {
                if (pacer.take() > 0) break;
                events.push(outbox.takeNext()!);
                size += next + 16;
              }
              yield create(AttachRequestSchema, { message: events.length === 1 ? { case: "event", value: event } : { case: "eventBatch", value: { events } } });
              continue;
            }
          }
          // Every event is on the wire before the completion: the control plane stores what
          // came before a completion first, so last_sequence is complete when it is recorded.
          if (completion && !completeSent) {
            completeSent = true;
            yield create(AttachRequestSchema, { message: completion.request });
            continue;
          }
        }
        await wake.wait(conn.signal);
      }
    }

    function onWelcome(welcome: Welcome): void {
      if (welcomed) {
        log.warn("second welcome on one stream; ignored");
        return;
      }
      welcomed = true;
      clearTimeout(welcomeTimer);
      epoch = welcome.leaseEpoch;
      const limits = welcome.assignment?.limits;
      if (!attached) {
        if (!welcome.assignment) throw new SessionFailure("protocol", "the welcome carries no assignment");
        attached = { assignment: welcome.assignment, protocolVersion: welcome.protocolVersion, leaseEpoch: epoch };
        outbox = createOutbox({ chunkBytes: logChunkBytes(limits?.maxEventPayloadBytes ?? 0, limits?.maxMessageBytes ?? 0), ...options.outbox });
      }
      try {
        outbox!.resume(welcome.ackedSequence);
      } catch (error) {
        throw new SessionFailure("protocol", (error as Error).message);
      }
      pacer = createPacer({ eventsPerSecond: limits?.maxEventsPerSecond || 2000, burst: limits?.maxEventsBurst || 100 });
      const heartbeatMs = welcome.heartbeatInterval ? durationMs(welcome.heartbeatInterval) : 5000;
      const leaseMs = welcome.leaseDuration ? durationMs(welcome.leaseDuration) : 30_000;
      // A half-open connection shows no error; the control plane's heartbeats stopping does.
      const silenceMs = Math.max(leaseMs, 3 * heartbeatMs);
      heartbeatTimer = setInterval(() => {
        if (performance.now() - lastHeard > silenceMs) {
          conn.abort(new Reconnect(`nothing from the control plane for ${silenceMs} ms`));
          return;
        }
        control.push({ message: { case: "heartbeat", value: { time: timestampNow(), leaseEpoch: epoch } } });
        wake.notify();
      }, Math.max(10, heartbeatMs));
      log.info(
        { stream: streams, epoch: epoch.toString(), protocol: welcome.protocolVersion, resumeAfter: welcome.ackedSequence.toString(), pending: outbox!.size.events },
        state === "starting" ? "attached" : "re-attached; resending from the control plane's resume point",
      );
      if (state === "starting") {
        transition("attached");
        started.resolve(attached!);
      }
      wake.notify();
    }

    function onCancel(pushed: Cancel): void {
      if (cancel) return; // the control plane repeats a pending cancel on every new stream
      cancel = { reason: pushed.reason, graceMs: pushed.grace ? durationMs(pushed.grace) : undefined };
      log.info({ reason: cancel.reason, graceMs: cancel.graceMs }, "cancel received");
      for (const listener of cancelListeners) notifyCancel(listener);
    }

    function onCompletionAck(ack: CompletionAck): void {
      if (!completion || ack.idempotencyKey !== completion.request.value.idempotencyKey) {
        log.warn("completion ack for another key; ignored");
        return;
      }
      if (completion.outcome === undefined) {
        completion.outcome = ack.outcome;
        if (ack.outcome !== CompletionOutcome.RECORDED) log.warn({ outcome: nameOf(CompletionOutcome, ack.outcome) }, "the control plane refused the completion as a conflict");
        completed.resolve(ack.outcome);
      }
      // The control plane stores the events before the completion, and acks come first; if
      // some are still unacked, a new stream re-synchronises from its stored point.
      if (!outbox!.drained) conn.abort(new Reconnect(`completion acknowledged before events ${outbox!.ackedSequence + 1n}..${outbox!.lastSequence}`));
      else endIfDone();
    }

    function endIfDone(): void {
      if (completion?.outcome !== undefined && outbox?.drained) {
        endRequested = true;
        wake.notify();
      }
    }

    function onProtocolError(error: ProtocolError): void {
      switch (error.code) {
        case ProtocolErrorCode.OUT_OF_ORDER:
          // Resend from the control plane's own resume point: a new stream's welcome says
          // exactly where it is, whereas errors for events still in flight on this one would
          // trigger a resend each.
          conn.abort(new Reconnect(`event ${error.sequence} refused as out of order`));
          return;
        case ProtocolErrorCode.MALFORMED_EVENT:
          // A bug of the agent; nothing was stored under that sequence, so it is reused for a
          // warning rather than leaving a gap that would stall the stream for good.
          log.error({ sequence: error.sequence.toString(), message: error.message }, "the control plane refused an event as malformed");
          outbox?.replace(error.sequence, { case: "warning", value: { code: "agent_event_malformed", message: clip(error.message) } });
          conn.abort(new Reconnect(`event ${error.sequence} refused as malformed`));
          return;
        default:
          log.warn({ code: nameOf(ProtocolErrorCode, error.code), message: error.message }, "the control plane refused a message");
      }
    }

    try {
      for await (const response of client.attach(requests(), { signal: conn.signal })) {
        lastHeard = performance.now();
        const message = response.message;
        switch (message.case) {
          case "welcome":
            onWelcome(message.value);
            break;
          case "ack":
            outbox?.ack(message.value.sequence);
            endIfDone();
            wake.notify();
            break;
          case "cancel":
            onCancel(message.value);
            break;
          case "completionAck":
            onCompletionAck(message.value);
            break;
          case "error":
            onProtocolError(message.value);
            break;
          case "heartbeat":
          default:
            break;
        }
      }
      if (endRequested) return { kind: "done" };
      return { kind: "retry", welcomed, error: new Error("the control plane ended the stream") };
    } catch (error) {
      if (error instanceof SessionFailure) return { kind: "final", error };
      if (stop.signal.aborted) return { kind: "final", error: failure ?? new SessionFailure("aborted", "the session ended") };
      if (conn.signal.reason instanceof Reconnect) return { kind: "retry", welcomed, error: conn.signal.reason };
      return classify(ConnectError.from(error), welcomed);
    } finally {
      clearTimeout(welcomeTimer);
      clearInterval(heartbeatTimer);
      stop.signal.removeEventListener("abort", onStop);
      conn.abort();
    }
  }

  function notifyCancel(listener: (notice: CancelNotice) => void): void {
    try {
      listener(cancel!);
    } catch (error) {
      log.error({ err: error }, "cancel listener failed");
    }
  }

  return {
    get state(): SessionState {
      return state;
    },
    /** The key of this attempt's completion, chosen once. */
    idempotencyKey,
    /** Streams opened so far. */
    get streams(): number {
      return streams;
    },
    /** The outbox, once attached (for diagnostics and tests). */
    get outbox(): Outbox | undefined {
      return outbox;
    },

    /** Opens the session; resolves with the assignment of the first welcome, rejects with a SessionFailure. */
    start(): Promise<AttachedAssignment> {
      loop ??= runLoop();
      return started.promise;
    },

    /** The attempt begins: events are expected from now on. */
    markRunning(): void {
      transition("running");
    },

    /** Queues a non-log event; returns its sequence, or undefined when the session takes no more events. */
    emit(payload: EventPayload): bigint | undefined {
      if (!outbox || (state !== "attached" && state !== "running")) {
        log.warn({ event: payload.case, state }, "event after the session stopped taking events; dropped");
        return undefined;
      }
      try {
        const sequence = outbox.append(fitted(payload));
        wake.notify();
        return sequence;
      } catch (error) {
        log.error({ err: error, event: payload.case }, "event cannot be encoded; dropped");
        return undefined;
      }
    },

    /** Queues step output as log.chunk events; shed while the outbox is full (see createOutbox). */
    emitLog(output: LogOutput): void {
      if (!outbox || (state !== "attached" && state !== "running")) return;
      outbox.appendLog(output);
      wake.notify();
    },

    /** Calls the listener once when a cancel is pushed (at once if one already was); returns an unsubscribe. */
    onCancel(listener: (notice: CancelNotice) => void): () => void {
      cancelListeners.add(listener);
      if (cancel) notifyCancel(listener);
      return () => cancelListeners.delete(listener);
    },

    /**
     * Sends the completion after every event, again on every new stream until acknowledged;
     * resolves with the outcome (RECORDED or CONFLICT both end the attempt) when the
     * acknowledgement arrives. The session then stops once every event is stored as well
     * (see finished()). Rejects with the SessionFailure if the session fails first.
     */
    complete(outcome: Completion): Promise<CompletionOutcome> {
      if (failure) return Promise.reject(failure);
      if (completion) return completed.promise;
      if (!outbox || (state !== "attached" && state !== "running")) return Promise.reject(new Error(`cannot complete in state ${state}`));
      outbox.reportDropped();
      completion = {
        request: {
          case: "complete",
          value: completeMessage(outcome, idempotencyKey, outbox.lastSequence, attached!.assignment.limits?.maxMessageBytes || 4 * 1024 * 1024),
        },
      };
      transition("draining");
      wake.notify();
      return completed.promise;
    },

    /** Resolves when the session has stopped or failed; never rejects. */
    finished(): Promise<SessionResult> {
      return finished.promise;
    },

    /** Ends the session now, as failed. */
    abort(reason = "the agent stopped the session"): void {
      fail(new SessionFailure("aborted", reason));
    },

    /** Resolves when the session's loop has ended and its connection is closed. */
    async closed(): Promise<void> {
      await loop;
    },
  };

  function classify(error: ConnectError, welcomed: boolean): ConnectionResult {
    switch (error.code) {
      case Code.Unauthenticated:
        return final("unauthenticated", `the control plane refused the attempt's credential: ${error.rawMessage}`, error.code);
      case Code.FailedPrecondition: {
        const mismatch = error.findDetails(ProtocolVersionMismatchSchema)[0];
        const message = mismatch
          ? `no common protocol version: this agent speaks ${AGENT_PROTOCOL.min}..${AGENT_PROTOCOL.max}, the control plane ${mismatch.supportedMin}..${mismatch.supportedMax}`
          : `the control plane refused the attempt: ${error.rawMessage}`;
        return final("refused", message, error.code);
      }
      case Code.Aborted: {
        const superseded = error.findDetails(LeaseSupersededSchema)[0];
        // Only the control plane's own answer carries the detail. connect-node also reports a
        // connection reset (a control plane killed mid-stream) as ABORTED: a transport failure,
        // to be retried like any other.
        if (!superseded) return { kind: "retry", welcomed, error: new Error(`the stream broke: ${error.rawMessage}`) };
        // An attach this session gave up on (no welcome in time) can still reach the control
        // plane after its successor and take the lease: that is not another agent, so attach again.
        if (superseded.sameAgent) return { kind: "retry", welcomed, error: new Error(`superseded by a late attach of this agent: ${error.rawMessage}`) };
        return final("superseded", `another agent attached for this attempt (lease epoch ${superseded.currentEpoch}); this one stops`, error.code);
      }
      case Code.InvalidArgument:
      case Code.PermissionDenied:
      case Code.Unimplemented:
      case Code.NotFound:
        return final("refused", `the control plane refused the stream: ${error.rawMessage}`, error.code);
      case Code.ResourceExhausted: {
        const limit = error.findDetails(LimitExceededSchema)[0];
        // A rate limit (events a second, attach attempts a minute) passes with time and says
        // when; a size limit refuses the same message on every resend, so retrying would loop
        // for ever (the agent keeps under both; see fitted()).
        if (!limit?.retryAfter) {
          return final("refused", `the control plane refused a message as too large (${limit?.limit ?? "message size"}): ${error.rawMessage}`, error.code);
        }
        return { kind: "retry", welcomed, error: new Error(`${limit.limit} limit exceeded: ${error.rawMessage}`), retryAfterMs: durationMs(limit.retryAfter) };
      }
      default:
        return { kind: "retry", welcomed, error: new Error(`${Code[error.code]}: ${error.rawMessage}`) };
    }
  }

  function final(kind: SessionFailure["kind"], message: string, code: Code): ConnectionResult {
    return { kind: "final", error: new SessionFailure(kind, message, code) };
  }
}

export type AgentSession = ReturnType<typeof createAgentSession>;

/** The name of a generated enum's value, for logs. */
function nameOf(values: Readonly<Record<string, number>>, value: number): string {
  return Object.keys(values).find((key) => values[key] === value) ?? String(value);
}

function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT - 1)}…`;
}

type CompleteInit = MessageInitShape<typeof CompleteSchema>;

/**
 * The Complete message, fitted into half the stream's message limit: a commit touching a huge
 * number of files would otherwise be refused (RESOURCE_EXHAUSTED) on every resend, for ever.
 * The list is cut and the reason says so; the pushed commit itself is the complete record.
 */
function completeMessage(outcome: Completion, idempotencyKey: string, lastSequence: bigint, maxMessageBytes: number): CompleteInit {
  const files = outcome.result?.changedFiles ?? [];
  const build = (keep: number): CompleteInit => ({
    idempotencyKey,
    status: outcome.status,
    result: outcome.result && { commitSha: outcome.result.commitSha, branch: outcome.result.branch, changedFiles: files.slice(0, keep) },
    reason: clip([outcome.reason, keep < files.length ? `changed_files lists ${keep} of ${files.length} files` : ""].filter(Boolean).join("; ")),
    artifactState: outcome.artifactState,
    lastSequence,
  });
  const fits = (value: CompleteInit) => toBinary(CompleteSchema, create(CompleteSchema, value)).byteLength <= maxMessageBytes / 2;
  let keep = files.length;
  let message = build(keep);
  while (keep > 0 && !fits(message)) message = build((keep = Math.floor(keep / 2)));
  return message;
}

/** Long free text is clipped, so a non-log event can never exceed the stream's event size limit. */
function fitted(payload: EventPayload): EventPayload {
  const value = payload.value as { message?: unknown; reason?: unknown };
  if (typeof value.message === "string" && value.message.length > MAX_TEXT) return { ...payload, value: { ...value, message: clip(value.message) } } as EventPayload;
  if (typeof value.reason === "string" && value.reason.length > MAX_TEXT) return { ...payload, value: { ...value, reason: clip(value.reason) } } as EventPayload;
  return payload;
}
