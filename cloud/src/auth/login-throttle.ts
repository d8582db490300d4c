// Slows password guessing: after MAX_FAILURES failed logins for one email from
// one address within WINDOW_MS, further attempts are refused until the window
// ends. Kept in MongoDB so every API replica sees the same counts.

import type { Collection, Db } from "mongodb";
import { secretHash } from "./secrets.ts";

interface AttemptDoc {
  _id: string;
  failures: number;
  windowStart: number;
}

export const MAX_FAILURES = 5;
export const WINDOW_MS = 15 * 60 * 1000;

export class LoginThrottle {
  private readonly attempts: Collection<AttemptDoc>;

  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.attempts = db.collection<AttemptDoc>("login_attempts");
  }

  /** Seconds until this email may try again from this address; 0 when it may try now. */
  async retryAfter(email: string, ip: string): Promise<number> {
    const doc = await this.attempts.findOne({ _id: key(email, ip) });
    if (!doc || doc.failures < MAX_FAILURES) return 0;
    const remaining = doc.windowStart + WINDOW_MS - this.now();
    return remaining > 0 ? Math.ceil(remaining / 1000) : 0;
  }

  async recordFailure(email: string, ip: string): Promise<void> {
    const id = key(email, ip);
    const now = this.now();
    const doc = await this.attempts.findOneAndUpdate(
      { _id: id },
      { $inc: { failures: 1 }, $setOnInsert: { windowStart: now } },
      { upsert: true, returnDocument: "after" },
    );
    if (doc && doc.windowStart + WINDOW_MS <= now) {
      await this.attempts.updateOne({ _id: id }, { $set: { failures: 1, windowStart: now } });
    }
  }

  async reset(email: string, ip: string): Promise<void> {
    await this.attempts.deleteOne({ _id: key(email, ip) });
  }
}

function key(email: string, ip: string): string {
  return secretHash(`${email}\n${ip}`);
}
