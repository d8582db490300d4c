// Partner webhook endpoints of every organization, and each endpoint's delivery health. The
// endpoint document is written by the API only, the health document by the dispatcher only (the
// lease holder): FerretDB updates are read-modify-write, so two writers never share a document.
// An endpoint is disabled by its owner (`enabled: false`) or automatically after sustained failure
// (the health document names the endpoint's `generation` it disabled); enabling it again starts a
// new generation, which ends the automatic disable without the API writing the health document.

import { randomBytes } from "node:crypto";
import type { Collection, Db } from "mongodb";
import type { EventType } from "../events/event-types.ts";
import { pointReads } from "../storage/point-reads.ts";

/** Endpoints one organization may have. */
export const MAX_ENDPOINTS = 20;

export interface EndpointDoc {
  _id: string;
  tenantId: string;
  url: string;
  events: EventType[];
  description: string;
  enabled: boolean;
  /** Incremented each time the owner enables it: an automatic disable of an earlier generation is over. */
  generation: number;
  /** The signing secret, sealed by SecretBox. */
  secret: string;
  createdAt: number;
  updatedAt: number;
}

export interface EndpointHealthDoc {
  _id: string;
  tenantId: string;
  lastSuccessAt: number | null;
  lastFailureAt: number | null;
  /** The first failed attempt since the last success; null while deliveries succeed. */
  failingSince: number | null;
  consecutiveFailures: number;
  /** Set when the dispatcher disabled the endpoint for sustained failure, with the generation it disabled. */
  disabledAt: number | null;
  disabledReason: string | null;
  disabledGeneration: number | null;
}

export type EndpointChanges = Partial<Pick<EndpointDoc, "url" | "events" | "description" | "enabled" | "secret">>;

/** Whether the dispatcher delivers to the endpoint now. */
export function endpointActive(endpoint: EndpointDoc, health: EndpointHealthDoc | null): boolean {
  return endpoint.enabled && !autoDisabled(endpoint, health);
}

export function autoDisabled(endpoint: EndpointDoc, health: EndpointHealthDoc | null): boolean {
  return health?.disabledGeneration != null && health.disabledGeneration === (endpoint.generation ?? 0);
}

export function emptyHealth(endpoint: Pick<EndpointDoc, "_id" | "tenantId">): EndpointHealthDoc {
  return {
    _id: endpoint._id,
    tenantId: endpoint.tenantId,
    lastSuccessAt: null,
    lastFailureAt: null,
    failingSince: null,
    consecutiveFailures: 0,
    disabledAt: null,
    disabledReason: null,
    disabledGeneration: null,
  };
}

export class EndpointStore {
  private readonly endpoints: Collection<EndpointDoc>;
  private readonly health: Collection<EndpointHealthDoc>;

  constructor(db: Db) {
    this.endpoints = db.collection<EndpointDoc>("webhook_endpoints");
    this.health = db.collection<EndpointHealthDoc>("webhook_endpoint_health");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<EndpointDoc>("webhook_endpoints").createIndex({ tenantId: 1, createdAt: 1 });
  }

  async create(fields: Omit<EndpointDoc, "_id" | "generation" | "updatedAt">): Promise<EndpointDoc> {
    const doc: EndpointDoc = {
      _id: `whe_${randomBytes(12).toString("base64url")}`,
      ...fields,
      generation: 0,
      updatedAt: fields.createdAt,
    };
    await this.endpoints.insertOne(doc);
    return doc;
  }

  count(tenantId: string): Promise<number> {
    return this.endpoints.countDocuments({ tenantId });
  }

  list(tenantId: string): Promise<EndpointDoc[]> {
    return this.endpoints.find({ tenantId }).sort({ createdAt: 1, _id: 1 }).limit(MAX_ENDPOINTS).toArray();
  }

  async find(tenantId: string, endpointId: string): Promise<EndpointDoc | null> {
    const doc = await this.endpoints.findOne({ _id: endpointId });
    return doc?.tenantId === tenantId ? doc : null;
  }

  /** Applies the changes; enabling starts a new generation, which ends an automatic disable. Null when not found. */
  async update(
    tenantId: string,
    endpointId: string,
    changes: EndpointChanges,
    now: number,
  ): Promise<EndpointDoc | null> {
    const result = await this.endpoints.updateOne(
      { _id: endpointId, tenantId },
      { $set: { ...changes, updatedAt: now }, ...(changes.enabled === true && { $inc: { generation: 1 } }) },
    );
    return result.matchedCount === 0 ? null : this.find(tenantId, endpointId);
  }

  async remove(tenantId: string, endpointId: string): Promise<boolean> {
    const result = await this.endpoints.deleteOne({ _id: endpointId, tenantId });
    if (result.deletedCount === 1) await this.health.deleteOne({ _id: endpointId });
    return result.deletedCount === 1;
  }

  /** Endpoints by id (any organization), for the dispatcher. */
  async byIds(ids: Iterable<string>): Promise<Map<string, EndpointDoc>> {
    const docs = await pointReads(this.endpoints, [...new Set(ids)]);
    return new Map(docs.map((doc) => [doc._id, doc]));
  }

  healthOf(endpointId: string): Promise<EndpointHealthDoc | null> {
    return this.health.findOne({ _id: endpointId });
  }

  async saveHealth(doc: EndpointHealthDoc): Promise<void> {
    await this.health.replaceOne({ _id: doc._id }, doc, { upsert: true });
  }
}
