/** What the registry can ask of an attached stream. */
export interface AttachedStream {
  readonly attemptId: string;
  readonly runId: string;
  readonly epoch: bigint;
  /** A newer stream took the lease: end this one with ABORTED. */
  supersede(currentEpoch: bigint): void;
  /** Push a cancel down the stream. */
  cancel(reason: string, graceMs: number | undefined): void;
}

/**
 * The streams attached to this control-plane process. Notifications from other replicas
 * (through PostgreSQL) and local events both land here, so a cancel or a takeover reaches the
 * stream wherever it is held.
 */
export function createSessionRegistry() {
  const byAttempt = new Map<string, Set<AttachedStream>>();

  return {
    /** Adds a stream, superseding any older local stream of the same attempt. */
    register(stream: AttachedStream): () => void {
      let set = byAttempt.get(stream.attemptId);
      if (!set) byAttempt.set(stream.attemptId, (set = new Set()));
      for (const other of set) if (other.epoch < stream.epoch) other.supersede(stream.epoch);
      set.add(stream);
      return () => {
        set.delete(stream);
        if (set.size === 0 && byAttempt.get(stream.attemptId) === set) byAttempt.delete(stream.attemptId);
      };
    },
    leaseTaken(attemptId: string, epoch: bigint): void {
      for (const stream of byAttempt.get(attemptId) ?? []) if (stream.epoch < epoch) stream.supersede(epoch);
    },
    cancelRun(runId: string, reason: string, graceMs: number | undefined): number {
      let reached = 0;
      for (const set of byAttempt.values()) {
        for (const stream of set) {
          if (stream.runId === runId) {
            stream.cancel(reason, graceMs);
            reached++;
          }
        }
      }
      return reached;
    },
    get size(): number {
      let n = 0;
      for (const set of byAttempt.values()) n += set.size;
      return n;
    },
  };
}

export type SessionRegistry = ReturnType<typeof createSessionRegistry>;
