// Users and their scrypt password hashes. An email is unique across tenants
// (it is the login name) and is the document id, lower-cased.

import type { Collection, Db } from "mongodb";
import type { Role } from "./auth-schema.ts";

export interface UserDoc {
  _id: string;
  tenantId: string;
  role: Role;
  passwordHash: string;
  createdAt: Date;
  updatedAt: Date;
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export class UserStore {
  private readonly users: Collection<UserDoc>;

  constructor(db: Db) {
    this.users = db.collection<UserDoc>("users");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<UserDoc>("users").createIndex({ tenantId: 1 });
  }

  findByEmail(email: string): Promise<UserDoc | null> {
    return this.users.findOne({ _id: normalizeEmail(email) });
  }

  /**
   * Creates the user or resets its password and role. A user of another tenant
   * is never moved: the upsert then fails on the duplicate id.
   */
  async upsert(tenantId: string, email: string, role: Role, passwordHash: string): Promise<void> {
    const now = new Date();
    await this.users.updateOne(
      { _id: normalizeEmail(email), tenantId },
      { $set: { tenantId, role, passwordHash, updatedAt: now }, $setOnInsert: { createdAt: now } },
      { upsert: true },
    );
  }
}
