/**
 * The body with each chunk passed through `map`, calling `ended` when it has been read to its
 * end (not when it throws or is abandoned). A plain iterator, not an async generator around
 * `yield*`: long-lived streams sit idle by the thousand (attached agents), and each suspended
 * generator layer holds its own request queue and promises.
 */
export function mapBody(body: AsyncIterable<Uint8Array>, map: (chunk: Uint8Array) => Uint8Array, ended: () => void = () => {}): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const iterator = body[Symbol.asyncIterator]();
      let done = false;
      return {
        async next() {
          const step = await iterator.next();
          if (!step.done) return { done: false, value: map(step.value) };
          if (!done) {
            done = true;
            ended();
          }
          return step;
        },
        return: (value?: unknown) => (iterator.return ? iterator.return(value) : Promise.resolve({ done: true as const, value: value as never })),
        throw: (error?: unknown) => (iterator.throw ? iterator.throw(error) : Promise.reject(error)),
      };
    },
  };
}
