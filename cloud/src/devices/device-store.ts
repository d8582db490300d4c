// Devices of a tenant: identity, labels, token hash, and the state the platform
// last heard from them. The id `<tenantId>|<deviceId>` makes every single-device
// lookup a point read, the only filter FerretDB v1 pushes down; the search
// indexes below serve MongoDB's list queries, and on FerretDB the device
// directory (device-directory.ts) serves them, kept up to date from here.

import type { DeviceMode, DeviceState, PluginStatus, ResetReason } from "@kestrel/wire";
import {
  type AnyBulkWriteOperation,
  type Collection,
  type Db,
  type Filter,
  MongoServerError,
  type Sort,
} from "mongodb";
import { secretMatches } from "../auth/secrets.ts";
import { boundedBulkWrite, boundedInsertMany } from "../storage/command-bounds.ts";
import { isFerretDb } from "../storage/engine.ts";
import { pointReads } from "../storage/point-reads.ts";
import { DeviceDirectory, type DirectoryEntry, entryFits, entryOf } from "./device-directory.ts";
import { type DeviceSearch, type SortPosition, searchFilter, searchSort } from "./device-query.ts";
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

/** The server-side deadline of a list query on MongoDB (an index range scan of a page). */
const LIST_MAX_TIME_MS = 5_000;

/** A page of the device list: its devices, and the sort position it ended at when there is a next page. */
export interface DevicePage {
  items: DeviceDoc[];
  endedAt: SortPosition | undefined;
}

/** What one apply pass learnt of a device from its telemetry. */
export interface TelemetrySeen {
  tenantId: string;
  deviceId: string;
  /** The newest sample's time, never past the cloud's clock. */
  seenAt: Date;
  /** The newest sample, when it is newer than the device's latest. */
  latest?: LatestSample;
}

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
  /** The list's index on FerretDB; MongoDB has its own indexes. */
  private readonly directory: DeviceDirectory | undefined;

  constructor(private readonly db: Db) {
    this.devices = db.collection<DeviceDoc>("devices");
    this.directory = isFerretDb(db) ? new DeviceDirectory(db) : undefined;
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
    const _id = deviceDocId(tenantId, deviceId);
    await this.devices.updateOne(
      { _id },
      { $set: { tokenHash }, $setOnInsert: DeviceStore.newDoc(tenantId, deviceId) },
      { upsert: true },
    );
    const doc = this.directory && (await this.devices.findOne({ _id }));
    if (doc) await this.directory?.put(tenantId, [doc]);
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
      await this.directory?.put(tenantId, [doc]);
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
    const docs: DeviceDoc[] = devices.map(({ deviceId, changes, state }) => ({
      _id: deviceDocId(tenantId, deviceId),
      ...DeviceStore.newDoc(tenantId, deviceId),
      ...labelFields(changes),
      ...state,
      tokenHash,
    }));
    const writeErrors = await boundedInsertMany(this.devices, docs);
    if (writeErrors.length > 0) {
      throw new Error(`${writeErrors.length} devices not created, first: ${writeErrors[0]?.errmsg ?? "unknown"}`);
    }
    await this.directory?.put(tenantId, docs);
  }

  /** Applies the changes; null when there is no such device in the tenant. */
  async update(tenantId: string, deviceId: string, changes: DeviceChanges): Promise<DeviceDoc | null> {
    const _id = deviceDocId(tenantId, deviceId);
    const result = await this.devices.updateOne({ _id }, { $set: labelFields(changes) });
    if (result.matchedCount === 0) return null;
    const doc = await this.devices.findOne({ _id });
    if (doc) await this.directory?.put(tenantId, [doc]);
    return doc;
  }

  async remove(tenantId: string, deviceId: string): Promise<boolean> {
    const result = await this.devices.deleteOne({ _id: deviceDocId(tenantId, deviceId) });
    if (result.deletedCount === 1) await this.directory?.remove(tenantId, [deviceId]);
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

  /**
   * One page of the search, and where it ended when there is a next page. On FerretDB the directory
   * names the page's devices, which are then read by `_id` and checked against the search again (a
   * device whose entry was stale is left out of this page).
   */
  async search(tenantId: string, search: DeviceSearch): Promise<DevicePage> {
    if (!this.directory) {
      const filter: Filter<DeviceDoc> = searchFilter(tenantId, search);
      const sort: Sort = searchSort(search);
      const docs = await this.devices
        .find(filter, { projection: { tokenHash: 0 }, maxTimeMS: LIST_MAX_TIME_MS })
        .sort(sort)
        .limit(search.limit + 1)
        .toArray();
      const items = docs.slice(0, search.limit);
      const last = items.at(-1);
      return { items, endedAt: docs.length > search.limit && last ? entryOf(last) : undefined };
    }
    const candidates = await this.directory.page(tenantId, search);
    const listed = candidates.slice(0, search.limit);
    const docs = await pointReads(
      this.devices,
      listed.map((entry) => deviceDocId(tenantId, entry.deviceId)),
      { tokenHash: 0 },
    );
    return {
      items: docs.filter((doc) => entryFits(entryOf(doc), search)),
      endedAt: candidates.length > search.limit ? listed.at(-1) : undefined,
    };
  }

  /** Which of these device ids exist in the tenant (one point read each). */
  async existing(tenantId: string, deviceIds: Iterable<string>): Promise<Set<string>> {
    const ids = [...new Set(deviceIds)].map((deviceId) => deviceDocId(tenantId, deviceId));
    return new Set((await pointReads(this.devices, ids, { deviceId: 1 })).map((doc) => doc.deviceId));
  }

  /** Ids of the tenant's devices carrying any of these tags or in any of these groups (labels are lower-case). */
  async idsLabelled(
    tenantId: string,
    labels: { tags: readonly string[]; groups: readonly string[] },
  ): Promise<string[]> {
    const filters: Filter<DeviceDoc>[] = [
      ...labels.tags.map((tag) => ({ tenantId, tags: tag.toLowerCase() })),
      ...labels.groups.map((group) => ({ tenantId, groups: group.toLowerCase() })),
    ];
    const found = await Promise.all(
      filters.map((filter) => this.devices.find(filter, { projection: { deviceId: 1 } }).toArray()),
    );
    return [...new Set(found.flat().map((doc) => doc.deviceId))];
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
   * Moves each device's lastSeen forward and, given a sample newer than the device's latest (the
   * caller, the one writer of telemetry, knows), sets it. Updates by `_id` only, the one filter
   * FerretDB looks up by index, in bounded commands.
   */
  recordTelemetry(seen: TelemetrySeen[]): Promise<void> {
    return this.oneWriterAtATime(() => this.applyTelemetry(seen));
  }

  private async applyTelemetry(seen: TelemetrySeen[]): Promise<void> {
    await boundedBulkWrite(
      this.devices,
      seen.map(({ tenantId, deviceId, seenAt, latest }) => ({
        updateOne: {
          filter: { _id: deviceDocId(tenantId, deviceId) },
          update: latest ? { $max: { lastSeen: seenAt }, $set: { latest } } : { $max: { lastSeen: seenAt } },
        },
      })),
    );
    const byTenant = new Map<string, Map<string, (entry: DirectoryEntry) => DirectoryEntry>>();
    for (const { tenantId, deviceId, seenAt } of seen) {
      const updates = byTenant.get(tenantId) ?? new Map<string, (entry: DirectoryEntry) => DirectoryEntry>();
      byTenant.set(tenantId, updates);
      updates.set(deviceId, (entry) => ({ ...entry, lastSeen: Math.max(entry.lastSeen, seenAt.getTime()) }));
    }
    for (const [tenantId, updates] of byTenant) await this.directory?.patch(tenantId, updates);
  }

  /**
   * Applies reported states, each unless a later one (by gateway receive time) was applied already,
   * as if one after the other in receive order. A state the device sent (online) moves lastSeen to
   * its receive time, never past now; the last will (`online: false`) does not: the broker sent it
   * once it noticed the device was gone. Point reads and updates by `_id` only (a filter on
   * `stateAt` too would make FerretDB scan the collection for every state), in bounded commands;
   * the check and the write are not atomic, so this process applies one batch at a time.
   */
  recordStates(tenantId: string, states: ReportedState[]): Promise<void> {
    return this.oneWriterAtATime(() => this.applyStates(tenantId, states));
  }

  /**
   * States (ingest) and telemetry (the apply pass) update the same device documents; FerretDB's
   * updates are read-modify-write, so two at once on one document can lose one's fields (a device
   * left without its latest sample or its state). This process writes them one batch at a time.
   */
  private oneWriterAtATime(write: () => Promise<void>): Promise<void> {
    const previous = deviceWrites.get(this.db) ?? Promise.resolve();
    const next = previous.then(write);
    deviceWrites.set(
      this.db,
      next.catch(() => undefined),
    );
    return next;
  }

  private async applyStates(tenantId: string, states: ReportedState[]): Promise<void> {
    const byDevice = new Map<string, ReportedState[]>();
    for (const reported of states)
      byDevice.set(reported.deviceId, [...(byDevice.get(reported.deviceId) ?? []), reported]);
    const stored = new Map(
      (
        await pointReads(
          this.devices,
          [...byDevice.keys()].map((deviceId) => deviceDocId(tenantId, deviceId)),
          { stateAt: 1 },
        )
      ).map((doc) => [doc._id, doc.stateAt ?? Number.NEGATIVE_INFINITY]),
    );
    const updates: AnyBulkWriteOperation<DeviceDoc>[] = [];
    const listed = new Map<string, (entry: DirectoryEntry) => DirectoryEntry>();
    for (const [deviceId, reported] of byDevice) {
      const _id = deviceDocId(tenantId, deviceId);
      const appliedAt = stored.get(_id);
      if (appliedAt === undefined) continue;
      const update: Partial<DeviceDoc> = {};
      let newest = appliedAt;
      let seenAt: number | undefined;
      for (const { state, receivedAt } of reported.sort((a, b) => a.receivedAt - b.receivedAt)) {
        if (receivedAt < newest) continue;
        newest = receivedAt;
        Object.assign(update, stateFields(state), { stateAt: receivedAt });
        if (state.online) seenAt = Math.min(receivedAt, Date.now());
      }
      if (update.stateAt === undefined) continue;
      updates.push({
        updateOne: {
          filter: { _id },
          update: seenAt === undefined ? { $set: update } : { $set: update, $max: { lastSeen: new Date(seenAt) } },
        },
      });
      listed.set(deviceId, (entry) => ({
        ...entry,
        online: update.online ?? entry.online,
        fw: update.fw ?? entry.fw,
        lastSeen: seenAt === undefined ? entry.lastSeen : Math.max(entry.lastSeen, seenAt),
      }));
    }
    await boundedBulkWrite(this.devices, updates);
    await this.directory?.patch(tenantId, listed);
  }
}

/** A state as the gateway received it. */
export interface ReportedState {
  deviceId: string;
  state: DeviceState;
  receivedAt: number;
}

// Per database, in this process: the device write in progress (see oneWriterAtATime).
const deviceWrites = new WeakMap<Db, Promise<void>>();

/** The device fields a state sets: `online` always, the rest when the state carries them. */
function stateFields(state: DeviceState): Partial<DeviceDoc> {
  const fields: Partial<DeviceDoc> = { online: state.online };
  if (state.fw !== undefined) fields.fw = state.fw;
  if (state.boot !== undefined) fields.boot = state.boot;
  if (state.reset !== undefined) fields.reset = state.reset;
  if (state.mode !== undefined) fields.mode = state.mode;
  if (state.uptime !== undefined) fields.uptime = state.uptime;
  if (state.heap !== undefined) fields.heap = state.heap;
  if (state.rssi !== undefined) fields.rssi = state.rssi;
  if (state.dropped !== undefined) fields.dropped = state.dropped;
  if (state.plugins !== undefined) fields.plugins = state.plugins;
  return fields;
}
