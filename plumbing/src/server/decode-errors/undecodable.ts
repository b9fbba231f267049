// connect-es answers a request body it cannot decode with INTERNAL, before any interceptor sees
// it (a unary request is parsed ahead of the interceptor chain). These are its messages for that.
const UNDECODABLE = [/^parse binary: /, /^received compressed envelope, but do not know how to decompress/];

/** Whether an INTERNAL error's message is connect's own for a request body it could not decode. */
export const isUndecodable = (message: string): boolean => UNDECODABLE.some((pattern) => pattern.test(message));
