// Abnormal resets devices report (the `reset` of the first state of each boot), one document per
// device and boot, so a campaign can compare a device's watchdog resets after an update with as
// long a time before it. A state repeated within a boot writes nothing new (the id is the boot's).

import type { ResetReason } from "@kestrel/wire";
import type { Collection, Db } from "mongodb";

interface ResetDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  boot: number;
  reason: ResetReason;
  at: Date;
}

const LOGGED: ReadonlySet<ResetReason> = new Set(["watchdog", "crash", "brownout"]);
const DUPLICATE_KEY = 11000;

export class ResetLog {
  private readonly resets: Collection<ResetDoc>;

  constructor(db: Db) {
    this.resets = db.collection<ResetDoc>("device_resets");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<ResetDoc>("device_resets").createIndex({ tenantId: 1, deviceId: 1, at: 1 });
  }

  /** Notes the reset a device's state reports, once per boot; other reasons are not kept. */
  async record(tenantId: string, deviceId: string, boot: number, reason: ResetReason, at: Date): Promise<void> {
    if (!LOGGED.has(reason)) return;
    try {
      await this.resets.insertOne({ _id: `${tenantId}|${deviceId}|${boot}`, tenantId, deviceId, boot, reason, at });
    } catch (error) {
      if ((error as { code?: number }).code !== DUPLICATE_KEY) throw error;
    }
  }

  /** Watchdog resets of the device in [from, to). */
  async watchdogResets(tenantId: string, deviceId: string, from: Date, to: Date): Promise<number> {
    const resets = await this.resets.find({ tenantId, deviceId }, { projection: { reason: 1, at: 1 } }).toArray();
    return resets.filter((reset) => reset.reason === "watchdog" && reset.at >= from && reset.at < to).length;
  }
}
