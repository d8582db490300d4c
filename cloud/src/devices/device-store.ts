// Devices of a tenant: identity, labels, token hash, and the state the platform
// last heard from them. The id `<tenantId>|<deviceId>` makes every single-device
// lookup a point read, the only filter FerretDB v1 pushes down to SQLite; the
// search indexes below serve MongoDB (FerretDB answers the same queries by scan).

import type { DeviceMode, DeviceState, PluginStatus, ResetReason } from "@kestrel/wire";
import { type Collection, type Db, type Filter, MongoServerError, type Sort } from "mongodb";
import { secretMatches } from "../auth/secrets.ts";
import { type DeviceSearch, searchFilter, searchSort } from "./device-query.ts";
import type { DeviceChanges, LatestSample, MetadataValue } from "./device-view.ts";

export interface DeviceDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  /** deviceId lower-cased, for case-insensitive prefix search. */
  idKey: string;
  name: string;
  /** name lower-cased, for search and sorting by name. */
  nameKey: string;
  /** Lower-case labels. */
  tags: string[];
  groups: string[];
  metadata: Record<string, MetadataValue>;
  tokenHash: string;
  createdAt: Date;
  online: boolean;
  /** NEVER_SEEN until the device is first heard from, so sorting and keyset paging see a value on every device. */
  lastSeen: Date;
  /** Gateway receive time of the state applied last; older states are ignored. */
  stateAt?: number;
  fw?: string;
  boot?: number;
  reset?: ResetReason;
  mode?: DeviceMode;
  uptime?: number;
  heap?: number;
  rssi?: number;
  dropped?: number;
  /** The plugins the device reported last, with their own counters and errors. */
  plugins?: PluginStatus[];
  latest?: LatestSample;
}

export const NEVER_SEEN = new Date(0);

export function deviceDocId(tenantId: string, deviceId: string): string {
  return `${tenantId}|${deviceId}`;
}

/** Search form of a name or query: NFC, trimmed, lower-case. */
export function searchKey(text: string): string {
  return text.normalize("NFC").trim().toLowerCase();
}

function labelFields(changes: DeviceChanges): Partial<DeviceDoc> {
  const fields: Partial<DeviceDoc> = {};
  if (changes.name !== undefined) {
    fields.name = changes.name;
    fields.nameKey = searchKey(changes.name);
  }
  if (changes.tags !== undefined) fields.tags = changes.tags;
  if (changes.groups !== undefined) fields.groups = changes.groups;
  if (changes.metadata !== undefined) fields.metadata = changes.metadata;
  return fields;
}

const DUPLICATE_KEY = 11000;

export class DeviceStore {
  private readonly devices: Collection<DeviceDoc>;

  constructor(db: Db) {
    this.devices = db.collection<DeviceDoc>("devices");
  }

  /**
   * Which list query uses which index (MongoDB): sort=id and the cursor over it → tenantId_deviceId;
   * sort=name → tenantId_nameKey_deviceId; sort=lastSeen and lastSeenBefore/After →
   * tenantId_lastSeen_deviceId; q → one branch per field: tenantId_deviceId is not lower-case, so
   * tenantId_idKey, tenantId_nameKey_deviceId and tenantId_tags; tag= → tenantId_tags; group= →
   * tenantId_groups; fw= → tenantId_fw_deviceId. online= is a residual filter (two values).
   */
  static async createIndexes(db: Db): Promise<void> {
    const devices = db.collection<DeviceDoc>("devices");
    await devices.createIndex({ tenantId: 1, deviceId: 1 }, { unique: true });
    await devices.createIndex({ tenantId: 1, idKey: 1 });
    await devices.createIndex({ tenantId: 1, nameKey: 1, deviceId: 1 });
    await devices.createIndex({ tenantId: 1, lastSeen: 1, deviceId: 1 });
    await devices.createIndex({ tenantId: 1, tags: 1 });
    await devices.createIndex({ tenantId: 1, groups: 1 });
    await devices.createIndex({ tenantId: 1, fw: 1, deviceId: 1 });
  }

  private static newDoc(tenantId: string, deviceId: string): Omit<DeviceDoc, "_id" | "tokenHash"> {
    return {
      tenantId,
      deviceId,
      idKey: deviceId.toLowerCase(),
      name: deviceId,
      nameKey: deviceId.toLowerCase(),
      tags: [],
      groups: [],
      metadata: {},
      createdAt: new Date(),
      online: false,
      lastSeen: NEVER_SEEN,
    };
  }

  /** Registers the device or replaces its token. */
  async upsertWithToken(tenantId: string, deviceId: string, tokenHash: string): Promise<void> {
    await this.devices.updateOne(
      { _id: deviceDocId(tenantId, deviceId) },
      { $set: { tokenHash }, $setOnInsert: DeviceStore.newDoc(tenantId, deviceId) },
      { upsert: true },
    );
  }

  /** Adds a device; null when the tenant has one with this id already. */
  async create(
    tenantId: string,
    deviceId: string,
    changes: DeviceChanges,
    tokenHash: string,
  ): Promise<DeviceDoc | null> {
    const doc: DeviceDoc = {
      _id: deviceDocId(tenantId, deviceId),
      ...DeviceStore.newDoc(tenantId, deviceId),
      ...labelFields(changes),
      tokenHash,
    };
    try {
      await this.devices.insertOne(doc);
      return doc;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return null;
      throw error;
    }
  }

  /** Bulk load for benchmarks and imports: documents as `create` would write them. */
  async createMany(
    tenantId: string,
    devices: Array<{ deviceId: string; changes: DeviceChanges; state?: Partial<DeviceDoc> }>,
    tokenHash: string,
  ): Promise<void> {
    await this.devices.insertMany(
      devices.map(({ deviceId, changes, state }) => ({
        _id: deviceDocId(tenantId, deviceId),
        ...DeviceStore.newDoc(tenantId, deviceId),
        ...labelFields(changes),
        ...state,
        tokenHash,
      })),
      { ordered: false },
    );
  }

  /** Applies the changes; null when there is no such device in the tenant. */
  async update(tenantId: string, deviceId: string, changes: DeviceChanges): Promise<DeviceDoc | null> {
    const _id = deviceDocId(tenantId, deviceId);
    const result = await this.devices.updateOne({ _id }, { $set: labelFields(changes) });
    return result.matchedCount === 0 ? null : this.devices.findOne({ _id });
  }

  async remove(tenantId: string, deviceId: string): Promise<boolean> {
    const result = await this.devices.deleteOne({ _id: deviceDocId(tenantId, deviceId) });
    return result.deletedCount === 1;
  }

  /** Replaces the token hash; false when there is no such device in the tenant. */
  async replaceToken(tenantId: string, deviceId: string, tokenHash: string): Promise<boolean> {
    const result = await this.devices.updateOne({ _id: deviceDocId(tenantId, deviceId) }, { $set: { tokenHash } });
    return result.matchedCount === 1;
  }

  find(tenantId: string, deviceId: string): Promise<DeviceDoc | null> {
    return this.devices.findOne({ _id: deviceDocId(tenantId, deviceId) });
  }

  /** One page of the search, plus one more document when there is a next page. */
  search(tenantId: string, search: DeviceSearch): Promise<DeviceDoc[]> {
    const filter: Filter<DeviceDoc> = searchFilter(tenantId, search);
    const sort: Sort = searchSort(search);
    return this.devices
      .find(filter, { projection: { tokenHash: 0 } })
      .sort(sort)
      .limit(search.limit + 1)
      .toArray();
  }

  /** Which of these device ids exist in the tenant (one point read each). */
  async existing(tenantId: string, deviceIds: Iterable<string>): Promise<Set<string>> {
    const ids = [...new Set(deviceIds)];
    const found = await Promise.all(
      ids.map((deviceId) => this.devices.findOne({ _id: deviceDocId(tenantId, deviceId) }, { projection: { _id: 1 } })),
    );
    return new Set(ids.filter((_, i) => found[i] !== null));
  }

  /** True only for a device of this tenant whose token matches. */
  async verifyToken(tenantId: string, deviceId: string, token: string): Promise<boolean> {
    const device = await this.devices.findOne(
      { _id: deviceDocId(tenantId, deviceId) },
      { projection: { tokenHash: 1 } },
    );
    return device !== null && secretMatches(token, device.tokenHash);
  }

  /**
   * Moves lastSeen forward and, given a sample newer than the device's latest (the caller, the one
   * writer of telemetry, knows), sets it. One update by `_id`: FerretDB looks only that up by index.
   */
  async recordTelemetry(tenantId: string, deviceId: string, seenAt: Date, latest?: LatestSample): Promise<void> {
    await this.devices.updateOne(
      { _id: deviceDocId(tenantId, deviceId) },
      latest ? { $max: { lastSeen: seenAt }, $set: { latest } } : { $max: { lastSeen: seenAt } },
    );
  }

  /**
   * Applies a reported state unless a later one (by gateway receive time) was applied already. A state
   * the device sent (online) moves lastSeen to its receive time, never past now; the last will
   * (`online: false`) does not: the broker sent it once it noticed the device was gone.
   */
  async recordState(tenantId: string, deviceId: string, state: DeviceState, receivedAt: number): Promise<void> {
    const update: Partial<DeviceDoc> = { online: state.online, stateAt: receivedAt };
    if (state.fw !== undefined) update.fw = state.fw;
    if (state.boot !== undefined) update.boot = state.boot;
    if (state.reset !== undefined) update.reset = state.reset;
    if (state.mode !== undefined) update.mode = state.mode;
    if (state.uptime !== undefined) update.uptime = state.uptime;
    if (state.heap !== undefined) update.heap = state.heap;
    if (state.rssi !== undefined) update.rssi = state.rssi;
    if (state.dropped !== undefined) update.dropped = state.dropped;
    if (state.plugins !== undefined) update.plugins = state.plugins;
    await this.devices.updateOne(
      { _id: deviceDocId(tenantId, deviceId), stateAt: { $not: { $gt: receivedAt } } },
      state.online
        ? { $set: update, $max: { lastSeen: new Date(Math.min(receivedAt, Date.now())) } }
        : { $set: update },
    );
  }
}
