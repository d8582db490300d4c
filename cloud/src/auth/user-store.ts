// Users and their scrypt password hashes. An email is unique platform-wide (it
// is the login name) and is the document id, lower-cased. Which organizations
// a user belongs to, and with which role, is the memberships' business
// (tenants/membership-store.ts).

import { type Collection, type Db, MongoServerError } from "mongodb";

export interface UserDoc {
  _id: string;
  passwordHash: string;
  createdAt: Date;
  updatedAt: Date;
}

const DUPLICATE_KEY = 11000;

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export class UserStore {
  private readonly users: Collection<UserDoc>;

  constructor(db: Db) {
    this.users = db.collection<UserDoc>("users");
  }

  findByEmail(email: string): Promise<UserDoc | null> {
    return this.users.findOne({ _id: normalizeEmail(email) });
  }

  /** Creates the user or resets its password. */
  async setPassword(email: string, passwordHash: string): Promise<void> {
    const now = new Date();
    await this.users.updateOne(
      { _id: normalizeEmail(email) },
      { $set: { passwordHash, updatedAt: now }, $setOnInsert: { createdAt: now } },
      { upsert: true },
    );
  }

  /** Creates the user; false when it exists already (its password is then left alone). */
  async create(email: string, passwordHash: string): Promise<boolean> {
    const now = new Date();
    try {
      await this.users.insertOne({ _id: normalizeEmail(email), passwordHash, createdAt: now, updatedAt: now });
      return true;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return false;
      throw error;
    }
  }
}
