// The append-only record of every campaign and device transition. Every transition goes through
// `record` and nowhere else, which also publishes it as a domain event (`campaign.transition`,
// `campaign.device_transition`) for partner webhooks.

import { randomBytes } from "node:crypto";
import type { Collection, Db } from "mongodb";
import { EventPublisher } from "../events/event-publisher.ts";

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
  private readonly events: EventPublisher;

  constructor(db: Db) {
    this.transitions = db.collection<TransitionDoc>("campaign_history");
    // Webhooks deliver an endpoint's events by their time: transitions recorded within one millisecond
    // (a campaign's creation and its first stage, a device's failure and the halt it causes) get
    // successive milliseconds, so partners receive them in the order they happened.
    let last = 0;
    this.events = new EventPublisher(db, () => {
      last = Math.max(Date.now(), last + 1);
      return last;
    });
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<TransitionDoc>("campaign_history").createIndex({ tenantId: 1, campaignId: 1, at: 1 });
  }

  /** The one place a transition is written and published. */
  async record(transition: CampaignTransition): Promise<void> {
    // Time first in the id, so ids sort by time like the records they name.
    const _id = `${transition.at.getTime().toString(36).padStart(9, "0")}-${randomBytes(6).toString("hex")}`;
    await this.transitions.insertOne({ _id, ...transition });
    const { tenantId, campaignId, deviceId, from, to, at, detail = null, code } = transition;
    // Keyed by the history record: each recorded transition is one event.
    if (deviceId === undefined)
      await this.events.publish(tenantId, "campaign.transition", _id, {
        campaignId,
        from,
        to,
        stage: code === undefined ? null : Number(code),
        detail,
        at: at.getTime(),
      });
    else
      await this.events.publish(tenantId, "campaign.device_transition", _id, {
        campaignId,
        deviceId,
        from,
        to,
        code: code ?? null,
        detail,
        at: at.getTime(),
      });
  }

  list(tenantId: string, campaignId: string, options: { deviceId?: string; limit: number }): Promise<TransitionDoc[]> {
    return this.transitions
      .find({ tenantId, campaignId, ...(options.deviceId ? { deviceId: options.deviceId } : {}) })
      .sort({ at: 1, _id: 1 })
      .limit(Math.min(options.limit, MAX_HISTORY_LISTED))
      .toArray();
  }
}
