// Slows password guessing without letting a stranger lock an account's owner out: failures are
// counted per (account, client address) — the address as the trusted proxies report it
// (TRUST_PROXY) — and after FREE_FAILURES of them each further attempt from that client must wait
// twice as long as the one before (1 s, 2 s, 4 s, … up to MAX_DELAY_MS). Another client, the owner's
// included, is not slowed by them. Counts are forgotten FORGET_AFTER_MS after the last failure and
// at a successful login from that client. Kept in MongoDB so every API replica sees the same counts;
// the whole API's per-address request limit (http/rate-limit.ts) bounds guessing across accounts.

import type { Collection, Db } from "mongodb";
import { Problem } from "../http/problem.ts";
import { secretHash } from "./secrets.ts";

interface AttemptDoc {
  _id: string;
  failures: number;
  lastFailureAt: number;
}

export const FREE_FAILURES = 5;
export const MAX_DELAY_MS = 15 * 60 * 1000;
export const FORGET_AFTER_MS = 15 * 60 * 1000;

/** How long a client must wait after this many failures in a row. */
export function delayAfter(failures: number): number {
  if (failures < FREE_FAILURES) return 0;
  return Math.min(1000 * 2 ** Math.min(failures - FREE_FAILURES, 20), MAX_DELAY_MS);
}

export class LoginThrottle {
  private readonly attempts: Collection<AttemptDoc>;

  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.attempts = db.collection<AttemptDoc>("login_attempts");
  }

  /** Seconds this client must wait before trying this account again; 0 when it may try now. */
  async retryAfter(email: string, client: string): Promise<number> {
    const doc = await this.attempts.findOne({ _id: key(email, client) });
    if (!doc || this.forgotten(doc)) return 0;
    const remaining = doc.lastFailureAt + delayAfter(doc.failures) - this.now();
    return remaining > 0 ? Math.ceil(remaining / 1000) : 0;
  }

  /** Refuses with 429 `login_throttled` and Retry-After while this client must wait for this account. */
  async assertMayTry(email: string, client: string): Promise<void> {
    const retryAfter = await this.retryAfter(email, client);
    if (retryAfter > 0) {
      throw new Problem(429, "login_throttled", `too many failed attempts; try again in ${retryAfter} s`, {
        "retry-after": String(retryAfter),
      });
    }
  }

  async recordFailure(email: string, client: string): Promise<void> {
    const _id = key(email, client);
    const now = this.now();
    const doc = await this.attempts.findOne({ _id });
    const failures = doc && !this.forgotten(doc) ? doc.failures + 1 : 1;
    await this.attempts.updateOne({ _id }, { $set: { failures, lastFailureAt: now } }, { upsert: true });
  }

  async reset(email: string, client: string): Promise<void> {
    await this.attempts.deleteOne({ _id: key(email, client) });
  }

  private forgotten(doc: AttemptDoc): boolean {
    return doc.lastFailureAt + FORGET_AFTER_MS <= this.now();
  }
}

function key(email: string, client: string): string {
  return secretHash(`${email}\n${client}`);
}
