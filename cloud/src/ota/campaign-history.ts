// The append-only record of every campaign and device transition. Every transition goes through
// `record` and nowhere else, so publishing them (webhooks) is one call added here.

import { randomBytes } from "node:crypto";
import type { Collection, Db } from "mongodb";

export interface CampaignTransition {
  tenantId: string;
  campaignId: string;
  /** Absent for the campaign's own transitions (created, stage started, halted...). */
  deviceId?: string;
  /** The status before; null for a creation. */
  from: string | null;
  to: string;
  at: Date;
  /** Why, in words: the halt reason, a device's failure reason, the operator who paused. */
  detail?: string;
  /** A device's failure code (ArtifactFailure), or the stage index for stage transitions. */
  code?: string;
}

interface TransitionDoc extends CampaignTransition {
  _id: string;
}

export const MAX_HISTORY_LISTED = 1000;

export class CampaignHistory {
  private readonly transitions: Collection<TransitionDoc>;

  constructor(db: Db) {
    this.transitions = db.collection<TransitionDoc>("campaign_history");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<TransitionDoc>("campaign_history").createIndex({ tenantId: 1, campaignId: 1, at: 1 });
  }

  /** The one place a transition is written (and, once webhooks land, published). */
  async record(transition: CampaignTransition): Promise<void> {
    // Time first in the id, so ids sort by time like the records they name.
    const _id = `${transition.at.getTime().toString(36).padStart(9, "0")}-${randomBytes(6).toString("hex")}`;
    await this.transitions.insertOne({ _id, ...transition });
  }

  list(tenantId: string, campaignId: string, options: { deviceId?: string; limit: number }): Promise<TransitionDoc[]> {
    return this.transitions
      .find({ tenantId, campaignId, ...(options.deviceId ? { deviceId: options.deviceId } : {}) })
      .sort({ at: 1, _id: 1 })
      .limit(Math.min(options.limit, MAX_HISTORY_LISTED))
      .toArray();
  }
}
