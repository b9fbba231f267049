import { createKeyedWakeups, type KeyedWakeups } from "@corral/plumbing/keyed-wakeups.ts";

/**
 * Wakes the downloads following an upload when it commits, finishes or fails, keyed by upload
 * id. The upload's own stream notifies directly (same process, no round trip); other replicas'
 * commits arrive through PostgreSQL NOTIFY, wired to notify at start-up.
 */
export const createUploadWatch: () => KeyedWakeups = createKeyedWakeups;

export type UploadWatch = KeyedWakeups;
