// Random secrets (session tokens, device tokens, gateway keys) and their stored
// form. They are 32 random bytes, so a fast SHA-256 is a safe storage hash;
// human passwords use scrypt instead (passwords.ts).

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const SECRET_BYTES = 32;

/** A new secret, base64url: 43 characters. */
export function newSecret(): string {
  return randomBytes(SECRET_BYTES).toString("base64url");
}

/** The form a secret is stored and looked up in. */
export function secretHash(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const actual = Buffer.from(secretHash(secret), "hex");
  const expected = Buffer.from(storedHash, "hex");
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
