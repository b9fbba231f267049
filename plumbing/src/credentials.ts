import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** 256 random bits: guessing one is out of reach for any attacker. */
const CREDENTIAL_BYTES = 32;
const PREFIX = "corral_att_";

/**
 * A per-attempt credential. The token goes to the sandbox once; only its hash is stored, so a
 * database dump grants nothing. The prefix makes leaked tokens easy for secret scanners to spot.
 */
export function mintCredential(): { token: string; hash: string } {
  const token = PREFIX + randomBytes(CREDENTIAL_BYTES).toString("base64url");
  return { token, hash: hashCredential(token) };
}

/** Lowercase hex sha256 of the token, as stored. */
export function hashCredential(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Compares a presented token with a stored hash in time independent of where they differ. */
export function credentialMatches(token: string, storedHash: string): boolean {
  const presented = Buffer.from(hashCredential(token), "hex");
  const stored = Buffer.from(storedHash, "hex");
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}

/** Cheap shape check, so that garbage is refused before any database work. */
export function looksLikeCredential(token: string): boolean {
  return token.length === PREFIX.length + 43 && token.startsWith(PREFIX) && /^[A-Za-z0-9_-]+$/.test(token.slice(PREFIX.length));
}
