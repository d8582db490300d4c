// Tenants: the unit of isolation. Every other document carries a tenantId and
// every query is scoped by it.

import { randomUUID } from "node:crypto";
import { type Collection, type Db, MongoServerError } from "mongodb";

export interface TenantDoc {
  _id: string;
  name: string;
  createdAt: Date;
}

const DUPLICATE_KEY = 11000;

export class TenantStore {
  private readonly tenants: Collection<TenantDoc>;

  constructor(db: Db) {
    this.tenants = db.collection<TenantDoc>("tenants");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<TenantDoc>("tenants").createIndex({ name: 1 }, { unique: true });
  }

  find(tenantId: string): Promise<TenantDoc | null> {
    return this.tenants.findOne({ _id: tenantId });
  }

  /** The tenant with this name, created if there is none. */
  async ensure(name: string): Promise<TenantDoc> {
    const existing = await this.tenants.findOne({ name });
    if (existing) return existing;
    const tenant: TenantDoc = { _id: randomUUID(), name, createdAt: new Date() };
    try {
      await this.tenants.insertOne(tenant);
      return tenant;
    } catch (error) {
      // Another process created it between our read and insert.
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) {
        const winner = await this.tenants.findOne({ name });
        if (winner) return winner;
      }
      throw error;
    }
  }
}
