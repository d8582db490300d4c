// How far each site gateway's uplink has come: every few seconds a gateway reports its queue (how
// many items wait, and when the oldest of them arrived), so the cloud knows up to which moment
// everything that gateway received is in the cloud. Scheduled exports wait for that before they
// read a range (exports/scheduler.ts). One document per gateway, replaced at each report.

import type { Collection, Db } from "mongodb";

export interface UplinkReport {
  /** Items waiting in the gateway's queue, those in flight included. */
  pending: number;
  /** Gateway clock, epoch ms: when the oldest waiting item arrived; null with an empty queue. */
  oldestAt: number | null;
  /** Gateway clock, epoch ms: when the report was made. */
  at: number;
}

export interface ProgressDoc {
  _id: string;
  tenantId: string;
  gatewayId: string;
  pending: number;
  /** Everything the gateway received before this moment (its clock) is in the cloud. */
  completeUntil: Date;
  reportedAt: Date;
}

/** A gateway silent for this long is taken as retired and no longer waited for. */
export const FORGET_GATEWAY_AFTER_MS = 24 * 3600 * 1000;

export class UplinkProgressStore {
  private readonly progress: Collection<ProgressDoc>;

  constructor(db: Db) {
    this.progress = db.collection<ProgressDoc>("gateway_uplink_progress");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<ProgressDoc>("gateway_uplink_progress").createIndex({ tenantId: 1 });
  }

  async report(tenantId: string, gatewayId: string, report: UplinkReport, now: Date): Promise<void> {
    const doc: ProgressDoc = {
      _id: `${tenantId}|${gatewayId}`,
      tenantId,
      gatewayId,
      pending: report.pending,
      completeUntil: new Date(report.oldestAt ?? report.at),
      reportedAt: now,
    };
    await this.progress.replaceOne({ _id: doc._id }, doc, { upsert: true });
  }

  /**
   * Up to when everything the organization's gateways received is in the cloud: the earliest of
   * their reports (a gateway cut off from the cloud holds it back at its last report); undefined
   * when no gateway reported within FORGET_GATEWAY_AFTER_MS.
   */
  async completeUntil(tenantId: string, now: number): Promise<number | undefined> {
    const docs = await this.progress.find({ tenantId }).toArray();
    const live = docs.filter((doc) => doc.reportedAt.getTime() > now - FORGET_GATEWAY_AFTER_MS);
    return live.length === 0 ? undefined : Math.min(...live.map((doc) => doc.completeUntil.getTime()));
  }

  /** The organization's gateways that reported since `since` (the system alert rules on gateway queues). */
  recent(tenantId: string, since: number): Promise<ProgressDoc[]> {
    return this.progress.find({ tenantId, reportedAt: { $gte: new Date(since) } }).toArray();
  }
}
