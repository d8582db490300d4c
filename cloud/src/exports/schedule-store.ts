// Export schedules of every organization. Reads of one schedule are point reads by `_id` checked
// against the tenant; the scheduler reads them all (a few per organization) on each poll.

import { randomBytes } from "node:crypto";
import type { Collection, Db } from "mongodb";
import type { ExportFormat } from "./export-format.ts";
import type { ExportDestination } from "./schedule-schema.ts";
import type { DeviceScope } from "./telemetry-export.ts";

/** Schedules one organization may have. */
export const MAX_SCHEDULES = 100;

export interface ScheduleDoc {
  _id: string;
  tenantId: string;
  name: string;
  cron: string;
  devices: DeviceScope;
  metrics: string[] | null;
  rangeSeconds: number;
  format: ExportFormat;
  destination: ExportDestination;
  /** The webhook signing secret, sealed by SecretBox; absent for downloads and schedules older than signing. */
  secret?: string;
  createdAt: Date;
}

export class ExportScheduleStore {
  private readonly schedules: Collection<ScheduleDoc>;

  constructor(db: Db) {
    this.schedules = db.collection<ScheduleDoc>("export_schedules");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<ScheduleDoc>("export_schedules").createIndex({ tenantId: 1, createdAt: 1 });
  }

  async create(fields: Omit<ScheduleDoc, "_id">): Promise<ScheduleDoc> {
    const doc: ScheduleDoc = { _id: randomBytes(12).toString("hex"), ...fields };
    await this.schedules.insertOne(doc);
    return doc;
  }

  count(tenantId: string): Promise<number> {
    return this.schedules.countDocuments({ tenantId });
  }

  list(tenantId: string): Promise<ScheduleDoc[]> {
    return this.schedules.find({ tenantId }).sort({ createdAt: 1, _id: 1 }).limit(MAX_SCHEDULES).toArray();
  }

  async find(tenantId: string, scheduleId: string): Promise<ScheduleDoc | null> {
    const doc = await this.schedules.findOne({ _id: scheduleId });
    return doc?.tenantId === tenantId ? doc : null;
  }

  async remove(tenantId: string, scheduleId: string): Promise<boolean> {
    const result = await this.schedules.deleteOne({ _id: scheduleId, tenantId });
    return result.deletedCount === 1;
  }

  /** One schedule of any organization, for the scheduler. */
  get(scheduleId: string): Promise<ScheduleDoc | null> {
    return this.schedules.findOne({ _id: scheduleId });
  }

  /** Every organization's schedules, for the scheduler. */
  all(): Promise<ScheduleDoc[]> {
    return this.schedules.find({}).toArray();
  }
}
