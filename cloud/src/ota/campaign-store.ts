// Campaigns and their devices in MongoDB. A campaign document holds the plan and where it stands;
// one document per (campaign, device) holds that device's status. Ids are derived from the names
// (`<tenant>|<campaign>[|<device>]`), so every single read is a point read; offers are claimed with
// a unique insert per attempt, atomic on FerretDB as on MongoDB, so replicas never hand out one
// offer twice at once.

import { randomBytes } from "node:crypto";
import type { ArtifactKind, SignedText } from "@kestrel/wire/artifacts";
import type { Collection, Db, Filter, UpdateFilter } from "mongodb";
import { boundedInsertMany } from "../storage/command-bounds.ts";
import type { DeviceRolloutStatus, Stage, Thresholds } from "./rollout.ts";

export type CampaignStatus = "running" | "paused" | "halted" | "cancelled" | "completed";

export interface CampaignTarget {
  devices: string[];
  tags: string[];
  groups: string[];
}

export interface CampaignDoc {
  _id: string;
  tenantId: string;
  campaignId: string;
  name: string;
  artifactId: string;
  kind: ArtifactKind;
  sha256: string;
  version: string;
  target: CampaignTarget;
  stages: Stage[];
  /** Devices per stage (not cumulative). */
  stageSizes: number[];
  deviceCount: number;
  startWindowSeconds: number;
  /** A device with no news for this long stops holding its stage back (and is offered again). */
  deviceTimeoutSeconds: number;
  thresholds: Thresholds;
  allowDowngrade: boolean;
  /** Signed permission for devices to install an older version, when allowDowngrade. */
  downgradeGrant?: SignedText;
  /** Start the next stage by itself once a stage has soaked; else an operator advances. */
  autoAdvance: boolean;
  status: CampaignStatus;
  /** Index of the current stage. */
  stage: number;
  stageStartedAt: Date;
  /** When every device of the current stage had finished (or stalled): the soak counts from here. */
  stageDoneAt?: Date;
  /** Rates count only outcomes after this (a resumed halt forgives what made it halt). */
  ratesSince: Date;
  haltReason?: string;
  createdBy: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface CampaignDeviceDoc {
  _id: string;
  tenantId: string;
  campaignId: string;
  deviceId: string;
  stage: number;
  status: DeviceRolloutStatus;
  bytes?: number;
  total?: number;
  code?: string;
  reason?: string;
  /** The version the device said it runs, last time it said. */
  running?: string;
  offers: number;
  /** Until then the last offer is not made again. */
  leaseUntil?: Date;
  notifiedAt?: Date;
  /** Gateway receive time of the last report applied; older reports are ignored. */
  reportedAt?: number;
  updatedAt: Date;
  /** When the device reached confirmed, failed or rolled-back. */
  finishedAt?: Date;
}

export const MAX_CAMPAIGNS_LISTED = 100;
const DUPLICATE_KEY = 11000;

export function campaignDocId(tenantId: string, campaignId: string): string {
  return `${tenantId}|${campaignId}`;
}

export function campaignDeviceId(tenantId: string, campaignId: string, deviceId: string): string {
  return `${tenantId}|${campaignId}|${deviceId}`;
}

export function newCampaignId(): string {
  return `cmp_${randomBytes(12).toString("base64url")}`;
}

export class CampaignStore {
  private readonly campaigns: Collection<CampaignDoc>;
  private readonly devices: Collection<CampaignDeviceDoc>;
  private readonly claims: Collection<{ _id: string; at: Date }>;

  constructor(db: Db) {
    this.campaigns = db.collection<CampaignDoc>("campaigns");
    this.devices = db.collection<CampaignDeviceDoc>("campaign_devices");
    this.claims = db.collection<{ _id: string; at: Date }>("campaign_offer_claims");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<CampaignDoc>("campaigns").createIndex({ tenantId: 1, createdAt: -1 });
    await db.collection<CampaignDoc>("campaigns").createIndex({ status: 1 });
    await db.collection<CampaignDeviceDoc>("campaign_devices").createIndex({ tenantId: 1, campaignId: 1, status: 1 });
    await db.collection<CampaignDeviceDoc>("campaign_devices").createIndex({ tenantId: 1, deviceId: 1 });
  }

  async insert(campaign: CampaignDoc, devices: CampaignDeviceDoc[]): Promise<void> {
    // A campaign's devices are new documents (the campaign id is new): any write error is a fault.
    const [failure] = await boundedInsertMany(this.devices, devices);
    if (failure) throw new Error(`campaign devices not stored: ${failure.errmsg ?? failure.code}`);
    // Last: a campaign is visible (and offered) only with all its devices in place.
    await this.campaigns.insertOne(campaign);
  }

  find(tenantId: string, campaignId: string): Promise<CampaignDoc | null> {
    return this.campaigns.findOne({ _id: campaignDocId(tenantId, campaignId) });
  }

  list(tenantId: string, limit: number): Promise<CampaignDoc[]> {
    return this.campaigns
      .find({ tenantId })
      .sort({ createdAt: -1 })
      .limit(Math.min(limit, MAX_CAMPAIGNS_LISTED))
      .toArray();
  }

  /** Running campaigns, of one organization or of all (the runner). */
  running(tenantId?: string): Promise<CampaignDoc[]> {
    return this.campaigns.find(tenantId ? { tenantId, status: "running" } : { status: "running" }).toArray();
  }

  /** Campaigns that still hold their devices (running, paused or halted). */
  async unfinished(tenantId: string): Promise<CampaignDoc[]> {
    const lists = await Promise.all(
      (["running", "paused", "halted"] as const).map((status) => this.campaigns.find({ tenantId, status }).toArray()),
    );
    return lists.flat();
  }

  /** Applies the change if the campaign still matches `expect`; false when it did not. */
  async update(
    campaign: CampaignDoc,
    expect: Filter<CampaignDoc>,
    set: Partial<CampaignDoc>,
    unset: string[] = [],
  ): Promise<boolean> {
    const update: UpdateFilter<CampaignDoc> = { $set: { ...set, updatedAt: new Date() } };
    if (unset.length > 0) update.$unset = Object.fromEntries(unset.map((field) => [field, ""]));
    const result = await this.campaigns.updateOne({ _id: campaign._id, ...expect }, update);
    return result.matchedCount === 1;
  }

  devicesOf(tenantId: string, campaignId: string): Promise<CampaignDeviceDoc[]> {
    return this.devices.find({ tenantId, campaignId }).sort({ deviceId: 1 }).toArray();
  }

  device(tenantId: string, campaignId: string, deviceId: string): Promise<CampaignDeviceDoc | null> {
    return this.devices.findOne({ _id: campaignDeviceId(tenantId, campaignId, deviceId) });
  }

  async updateDevice(doc: CampaignDeviceDoc, set: Partial<CampaignDeviceDoc>, unset: string[] = []): Promise<void> {
    const update: UpdateFilter<CampaignDeviceDoc> = { $set: set };
    if (unset.length > 0) update.$unset = Object.fromEntries(unset.map((field) => [field, ""]));
    await this.devices.updateOne({ _id: doc._id }, update);
  }

  /** True for the one caller that wins this offer attempt of the device. */
  async claimOffer(doc: CampaignDeviceDoc): Promise<boolean> {
    try {
      await this.claims.insertOne({ _id: `${doc._id}|${doc.offers + 1}`, at: new Date() });
      return true;
    } catch (error) {
      if ((error as { code?: number }).code === DUPLICATE_KEY) return false;
      throw error;
    }
  }
}
