// Plugin assignments in MongoDB: a plugin version, the devices, tags or groups it is for, the config
// and enabled state it runs with there, and the rollout (an OTA campaign of kind plugin) that
// delivers the current version. `_id` is `<tenant>|<assignment>`, so single reads are point reads.

import { randomBytes } from "node:crypto";
import type { PluginConfig } from "@kestrel/wire";
import type { Collection, Db } from "mongodb";
import type { CampaignTarget } from "../ota/campaign-store.ts";

/** A version of the plugin, as the registry names it. */
export interface AssignedVersion {
  artifactId: string;
  version: string;
}

export interface AssignmentDoc extends AssignedVersion {
  _id: string;
  tenantId: string;
  assignmentId: string;
  plugin: string;
  target: CampaignTarget;
  /** The version this assignment ran before the last upgrade or rollback: what a rollback returns to. */
  previous?: AssignedVersion;
  config: PluginConfig;
  enabled: boolean;
  /** The rollout delivering the current version. */
  campaignId: string;
  createdBy: string;
  createdAt: Date;
  updatedAt: Date;
}

/** A plugin has at most this many assignments in an organization. */
export const MAX_ASSIGNMENTS = 100;

export function assignmentDocId(tenantId: string, assignmentId: string): string {
  return `${tenantId}|${assignmentId}`;
}

export function newAssignmentId(): string {
  return `pla_${randomBytes(12).toString("base64url")}`;
}

export class AssignmentStore {
  private readonly assignments: Collection<AssignmentDoc>;

  constructor(db: Db) {
    this.assignments = db.collection<AssignmentDoc>("plugin_assignments");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<AssignmentDoc>("plugin_assignments").createIndex({ tenantId: 1, plugin: 1 });
  }

  async insert(doc: AssignmentDoc): Promise<void> {
    await this.assignments.insertOne(doc);
  }

  find(tenantId: string, plugin: string, assignmentId: string): Promise<AssignmentDoc | null> {
    return this.assignments.findOne({ _id: assignmentDocId(tenantId, assignmentId), plugin });
  }

  ofPlugin(tenantId: string, plugin: string): Promise<AssignmentDoc[]> {
    return this.assignments.find({ tenantId, plugin }).sort({ createdAt: 1 }).limit(MAX_ASSIGNMENTS).toArray();
  }

  /** Assignments of every plugin, for the organization's plugin list. */
  all(tenantId: string): Promise<AssignmentDoc[]> {
    return this.assignments.find({ tenantId }).toArray();
  }

  /** Applies the change if nobody changed the assignment since `doc` was read; false otherwise. */
  async update(doc: AssignmentDoc, set: Partial<AssignmentDoc>): Promise<boolean> {
    const result = await this.assignments.updateOne(
      { _id: doc._id, updatedAt: doc.updatedAt },
      { $set: { ...set, updatedAt: new Date() } },
    );
    return result.matchedCount === 1;
  }

  async remove(doc: AssignmentDoc): Promise<void> {
    await this.assignments.deleteOne({ _id: doc._id });
  }
}
