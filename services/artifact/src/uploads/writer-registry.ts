/**
 * One writing stream per upload in this process. A new stream for an upload (a client that
 * reconnected before the server noticed its old stream died) supersedes the old one: the old one
 * is told to stop, and the new one starts only once the old one has committed what it wrote and
 * closed its file, so two streams never write the same partial data. Across replicas, the upload's
 * writer epoch in PostgreSQL fences the older stream off.
 */
export function createWriterRegistry() {
  const current = new Map<string, { supersede: () => void; done: Promise<void> }>();
  return {
    /**
     * Registers a stream as the upload's writer. `ready` resolves when the previous writer (if
     * any) is done; `release` must be called when this one is, whatever happened.
     */
    claim(uploadId: string, supersede: () => void): { ready: Promise<void>; release: () => void } {
      const previous = current.get(uploadId);
      let resolveDone!: () => void;
      const entry = { supersede, done: new Promise<void>((resolve) => (resolveDone = resolve)) };
      current.set(uploadId, entry);
      previous?.supersede();
      return {
        ready: previous?.done ?? Promise.resolve(),
        release() {
          if (current.get(uploadId) === entry) current.delete(uploadId);
          resolveDone();
        },
      };
    },
    get active(): number {
      return current.size;
    },
  };
}

export type WriterRegistry = ReturnType<typeof createWriterRegistry>;
