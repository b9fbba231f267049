/**
 * True when `promise` fulfils within `ms`, false when the time runs out first; a rejection within
 * the time is passed on. For waits that must not last for ever (shutdowns, first syncs): the
 * caller decides what running out means. The timer never outlives the wait.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
