// Tenants: the unit of isolation. Every other document carries a tenantId and
// every query is scoped by it.

import { randomUUID } from "node:crypto";
import { type Collection, type Db, MongoServerError } from "mongodb";

/** How long telemetry is kept; the retention job (CLOUD-DATA) reads it with `settingsOf`. */
export interface RetentionSettings {
  /** Days raw samples are kept. */
  rawDays: number;
  /** Days rollups are kept; never shorter than `rawDays`. */
  rollupDays: number;
}

export interface TenantSettings {
  retention: RetentionSettings;
}

export const DEFAULT_SETTINGS: TenantSettings = Object.freeze({
  retention: Object.freeze({ rawDays: 30, rollupDays: 365 }),
});

export interface TenantDoc {
  _id: string;
  name: string;
  createdAt: Date;
  /** Absent until an admin changes a setting; `settingsOf` fills in the defaults. */
  settings?: Partial<TenantSettings>;
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

  /** The organization's settings with defaults for those never set; undefined for an unknown tenant. */
  async settingsOf(tenantId: string): Promise<TenantSettings | undefined> {
    const tenant = await this.find(tenantId);
    return tenant ? withDefaults(tenant) : undefined;
  }

  async setRetention(tenantId: string, retention: RetentionSettings): Promise<void> {
    await this.tenants.updateOne(
      { _id: tenantId },
      { $set: { "settings.retention": { rawDays: retention.rawDays, rollupDays: retention.rollupDays } } },
    );
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

export function withDefaults(tenant: TenantDoc): TenantSettings {
  return { retention: { ...DEFAULT_SETTINGS.retention, ...tenant.settings?.retention } };
}
