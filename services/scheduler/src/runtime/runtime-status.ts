import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Runtime, type RuntimeInfoSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import type { RuntimeName } from "../runs/validated-submission.ts";
import type { RuntimeBackend } from "./runtime-backend.ts";

/** Every runtime this version knows, in the order of the Runtime enum. */
const KNOWN: { name: RuntimeName; runtime: Runtime }[] = [
  { name: "local", runtime: Runtime.LOCAL },
  { name: "docker", runtime: Runtime.DOCKER },
  { name: "kubernetes", runtime: Runtime.KUBERNETES },
];

export interface RuntimeStatusOptions {
  /** CORRAL_RUNTIMES. */
  enabled: readonly RuntimeName[];
  /** CORRAL_DEFAULT_RUNTIME. */
  defaultRuntime: RuntimeName;
  /** The backends as they are now: filled in once the scheduler has started them. */
  backends: ReadonlyMap<string, RuntimeBackend>;
  /** How long one round of preflight checks answers every caller. */
  ttlMs?: number;
  /** Longest one preflight may take before it counts as failed. */
  timeoutMs?: number;
  now?: () => number;
}

export type RuntimeInfoInit = MessageInitShape<typeof RuntimeInfoSchema>;

/**
 * The runtime panel's answer: each known runtime, whether it is enabled, and its preflight.
 * Preflights are cached for `ttlMs` and shared by concurrent callers, so a dashboard refreshed
 * by many people costs a cluster one round of checks every few seconds, not one per page view.
 */
export function createRuntimeStatus(options: RuntimeStatusOptions) {
  const ttlMs = options.ttlMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const now = options.now ?? Date.now;
  let cached: { at: number; result: Promise<RuntimeInfoInit[]> } | undefined;

  async function check(): Promise<RuntimeInfoInit[]> {
    return Promise.all(
      KNOWN.map(async ({ name, runtime }): Promise<RuntimeInfoInit> => {
        const isDefault = name === options.defaultRuntime;
        if (!options.enabled.includes(name)) {
          return { runtime, name, enabled: false, isDefault, ok: false, message: "not enabled on this scheduler (CORRAL_RUNTIMES)" };
        }
        const backend = options.backends.get(name);
        const checkedAt = timestampFromMs(now());
        if (!backend) return { runtime, name, enabled: true, isDefault, ok: false, message: "starting: the runtime is not ready yet", checkedAt };
        const { ok, message } = await preflight(backend, timeoutMs);
        return { runtime, name, enabled: true, isDefault, ok, message, checkedAt };
      }),
    );
  }

  return {
    /** The runtimes, from a round of checks at most `ttlMs` old. The signal ends only the wait. */
    async list(signal?: AbortSignal): Promise<RuntimeInfoInit[]> {
      if (!cached || now() - cached.at >= ttlMs) {
        const round = { at: now(), result: check() };
        cached = round;
        // A round that started while runtimes were still starting is not worth keeping.
        void round.result.then((infos) => {
          if (infos.some((i) => i.enabled && !options.backends.has(i.name!)) && cached === round) cached = undefined;
        });
      }
      return abortable(cached.result, signal);
    },
  };
}

/** A backend's preflight, bounded in time; a throw or a timeout is a failed check that says so. */
async function preflight(backend: RuntimeBackend, timeoutMs: number): Promise<{ ok: boolean; message: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    return await abortable(backend.preflight(controller.signal), controller.signal);
  } catch (error) {
    if (controller.signal.aborted) return { ok: false, message: `the preflight check did not answer within ${Math.round(timeoutMs / 1000)} s` };
    return { ok: false, message: `the preflight check failed: ${(error as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

export type RuntimeStatus = ReturnType<typeof createRuntimeStatus>;
