import type { ServiceImpl } from "@connectrpc/connect";
import type { RunnerService } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";
import { createKeyedRateLimiter } from "@corral/plumbing/keyed-rate-limiter.ts";
import { createAttachSession, type AttachDeps } from "./attach-session.ts";

/** corral.runner.v1.RunnerService: a thin shell around one attach session per stream. */
export function createRunnerService(deps: AttachDeps): Partial<ServiceImpl<typeof RunnerService>> {
  // One limiter for the whole service: attempts are counted per credential across streams.
  deps = { ...deps, attachLimiter: deps.attachLimiter ?? createKeyedRateLimiter({ perMinute: deps.config.CORRAL_ATTACH_ATTEMPTS_PER_MINUTE }) };
  return {
    // Not an async generator: the queue is the response stream itself, one layer (and its
    // pending promises) fewer for each of the thousands of streams held open (bench P4).
    attach(requests, context) {
      const session = createAttachSession(deps, context.signal);
      // consume() never rejects; it ends when the agent closes its side or when connect
      // aborts the request stream after the response ends. Not awaited: a stream ended by the
      // server (superseded, limits) must not wait for the agent's next message.
      void session.consume(requests);
      return session.outgoing;
    },
  };
}
