// The device list on FerretDB v1, which answers only `_id` equality from an
// index: a list query there reads every device document of the collection
// (every organization's), 1-2 s at 10,000 devices and 14-26 s at 100,000,
// whatever the filter or the page. What a page needs is the organization's
// search and sort fields, compactly, and then its own 25-50 devices: the
// directory keeps, per organization, one entry per device (id, name key,
// online, firmware, last seen, tags, groups) in SHARDS documents read by `_id`,
// each one packed string (FerretDB converts nested documents field by field).
// A list reads the shards, filters and sorts the entries in memory, and reads
// the page's devices by `_id`, checking each against the search again: the
// device documents stay the truth, the directory only says where to look.
//
// Every write of a listed field goes through here too, a shard at a time and
// one write per shard at a time in this process (FerretDB's updates are
// read-modify-write, so two writers of one document lose one's change). A
// second process writing the same organization could still lose a change
// here; the directory is rebuilt from the device documents when it is older
// than REBUILD_AFTER_MS, so such a loss lasts that long at most. MongoDB does
// not need any of this (its indexes answer the list), and does not get it.

import type { Collection, Db } from "mongodb";
import { boundedBulkWrite } from "../storage/command-bounds.ts";
import { pointReads } from "../storage/point-reads.ts";
import type { DeviceSearch } from "./device-query.ts";
import type { DeviceDoc } from "./device-store.ts";

/** Shards per organization: at 10,000 devices ~625 entries (~70 KB) each. */
const SHARDS = 16;
/** A directory older than this is rebuilt from the device documents, in the background. */
const REBUILD_AFTER_MS = 15 * 60_000;

/** A device's listed fields: what search, filters, sorts and cursors need. */
export interface DirectoryEntry {
  deviceId: string;
  nameKey: string;
  online: boolean;
  fw: string | null;
  /** Epoch ms; 0 for never seen, as NEVER_SEEN. */
  lastSeen: number;
  tags: string[];
  groups: string[];
}

/** An entry as packed in a shard, by device id: [nameKey, online, fw, lastSeen, tags, groups]. */
type PackedEntry = [string, 0 | 1, string | null, number, string[], string[]];

interface ShardDoc {
  _id: string;
  tenantId: string;
  /** JSON of Record<deviceId, PackedEntry>. */
  e: string;
}

/** Marks an organization's directory as built, and when: an empty directory is then an empty fleet. */
interface BuiltDoc {
  _id: string;
  tenantId: string;
  builtAt: Date;
}

export function entryOf(doc: DeviceDoc): DirectoryEntry {
  return {
    deviceId: doc.deviceId,
    nameKey: doc.nameKey ?? doc.deviceId.toLowerCase(),
    online: doc.online === true,
    fw: doc.fw ?? null,
    lastSeen: doc.lastSeen ? doc.lastSeen.getTime() : 0,
    tags: doc.tags ?? [],
    groups: doc.groups ?? [],
  };
}

function pack(entry: DirectoryEntry): PackedEntry {
  return [entry.nameKey, entry.online ? 1 : 0, entry.fw, entry.lastSeen, entry.tags, entry.groups];
}

function unpack(deviceId: string, [nameKey, online, fw, lastSeen, tags, groups]: PackedEntry): DirectoryEntry {
  return { deviceId, nameKey, online: online === 1, fw, lastSeen, tags, groups };
}

/** FNV-1a over the id's UTF-16 units: a stable shard for each device. */
function shardOf(deviceId: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < deviceId.length; i++) hash = Math.imul(hash ^ deviceId.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % SHARDS;
}

const shardId = (tenantId: string, shard: number) => `${tenantId}|${shard}`;
const builtId = (tenantId: string) => `${tenantId}|built`;

/** MongoDB's string order (UTF-8 bytes), which UTF-16 order differs from past the BMP. */
function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.codePointAt(i) as number;
    const y = b.codePointAt(i) as number;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** The search's filter, as `searchFilter` (device-query.ts) has MongoDB apply it, over an entry. */
function entryMatches(entry: DirectoryEntry, search: DeviceSearch): boolean {
  if (search.online !== undefined && entry.online !== search.online) return false;
  if (search.fw !== undefined && entry.fw !== search.fw) return false;
  if (search.tag !== undefined && !entry.tags.includes(search.tag)) return false;
  if (search.group !== undefined && !entry.groups.includes(search.group)) return false;
  if (search.lastSeenBefore !== undefined && !(entry.lastSeen < search.lastSeenBefore)) return false;
  if (search.lastSeenAfter !== undefined && !(entry.lastSeen > search.lastSeenAfter)) return false;
  const q = search.q;
  return (
    q === undefined ||
    entry.deviceId.toLowerCase().startsWith(q) ||
    entry.nameKey.startsWith(q) ||
    entry.tags.some((tag) => tag.startsWith(q))
  );
}

function sortValue(entry: DirectoryEntry, sort: DeviceSearch["sort"]): string | number {
  return sort === "id" ? entry.deviceId : sort === "name" ? entry.nameKey : entry.lastSeen;
}

function compareValues(a: string | number, b: string | number): number {
  return typeof a === "number" && typeof b === "number" ? a - b : compareStrings(String(a), String(b));
}

/** The search's order, as `searchSort` has MongoDB apply it: the sort field, then the device id. */
function compareFor(search: DeviceSearch): (a: DirectoryEntry, b: DirectoryEntry) => number {
  const direction = search.order === "asc" ? 1 : -1;
  return (a, b) =>
    direction *
    (compareValues(sortValue(a, search.sort), sortValue(b, search.sort)) || compareStrings(a.deviceId, b.deviceId));
}

/** True when the entry belongs in the search's answer: it matches, and it comes after the cursor. */
export function entryFits(entry: DirectoryEntry, search: DeviceSearch): boolean {
  if (!entryMatches(entry, search)) return false;
  const cursor = search.after;
  if (!cursor) return true;
  const direction = search.order === "asc" ? 1 : -1;
  const order =
    compareValues(sortValue(entry, search.sort), search.sort === "id" ? cursor.deviceId : cursor.value) ||
    compareStrings(entry.deviceId, cursor.deviceId);
  return direction * order > 0;
}

// Per database, in this process: the write in progress on each shard (see the header).
const writing = new WeakMap<Db, Map<string, Promise<unknown>>>();

export class DeviceDirectory {
  private readonly shards: Collection<ShardDoc>;
  private readonly built: Collection<BuiltDoc>;
  private readonly devices: Collection<DeviceDoc>;

  constructor(private readonly db: Db) {
    this.shards = db.collection<ShardDoc>("device_directory");
    this.built = db.collection<BuiltDoc>("device_directory_built");
    this.devices = db.collection<DeviceDoc>("devices");
  }

  /** Sets the entries of these devices (created, relabelled). */
  put(tenantId: string, docs: DeviceDoc[]): Promise<void> {
    const entries = new Map(docs.map((doc) => [doc.deviceId, entryOf(doc)] as const));
    return this.change(tenantId, [...entries.keys()], (_, deviceId) => entries.get(deviceId));
  }

  remove(tenantId: string, deviceIds: string[]): Promise<void> {
    return this.change(tenantId, deviceIds, () => null);
  }

  /** Changes the entries of these devices that the directory has; `update` answers the new entry. */
  patch(tenantId: string, updates: Map<string, (entry: DirectoryEntry) => DirectoryEntry>): Promise<void> {
    return this.change(tenantId, [...updates.keys()], (entry, deviceId) => {
      const update = updates.get(deviceId);
      return entry && update ? update(entry) : undefined;
    });
  }

  /**
   * The candidates for one page of the search: the organization's entries that fit it, in its order,
   * `limit + 1` at most. Builds the directory first if it never was.
   */
  async page(tenantId: string, search: DeviceSearch): Promise<DirectoryEntry[]> {
    const built = await this.built.findOne({ _id: builtId(tenantId) });
    if (!built) await this.rebuild(tenantId);
    else if (Date.now() - built.builtAt.getTime() > REBUILD_AFTER_MS) {
      // Heals what a second writer may have lost; this page is answered from the directory as it is.
      this.rebuild(tenantId).catch(() => undefined);
    }
    const ids = Array.from({ length: SHARDS }, (_, shard) => shardId(tenantId, shard));
    const fitting: DirectoryEntry[] = [];
    for (const doc of await pointReads(this.shards, ids)) {
      for (const [deviceId, packed] of Object.entries(JSON.parse(doc.e) as Record<string, PackedEntry>)) {
        const entry = unpack(deviceId, packed);
        if (entryFits(entry, search)) fitting.push(entry);
      }
    }
    return fitting.sort(compareFor(search)).slice(0, search.limit + 1);
  }

  /** Writes every shard of the organization from its device documents (a scan, on FerretDB). */
  async rebuild(tenantId: string): Promise<void> {
    const ids = Array.from({ length: SHARDS }, (_, shard) => shardId(tenantId, shard));
    await this.exclusively(ids, async () => {
      const shards: Array<Record<string, PackedEntry>> = Array.from({ length: SHARDS }, () => ({}));
      const docs = this.devices.find(
        { tenantId },
        { projection: { deviceId: 1, nameKey: 1, online: 1, fw: 1, lastSeen: 1, tags: 1, groups: 1 } },
      );
      for await (const doc of docs) {
        const entry = entryOf(doc);
        (shards[shardOf(entry.deviceId)] as Record<string, PackedEntry>)[entry.deviceId] = pack(entry);
      }
      await this.write(
        tenantId,
        shards.map((entries, shard) => [shardId(tenantId, shard), entries]),
      );
      await this.built.replaceOne({ _id: builtId(tenantId) }, { tenantId, builtAt: new Date() }, { upsert: true });
    });
  }

  /**
   * Reads the shards of these devices, sets each device's entry to `next(entry, id)` (null: none;
   * undefined: unchanged) and writes back the shards that changed, one write per shard at a time.
   */
  private async change(
    tenantId: string,
    deviceIds: string[],
    next: (entry: DirectoryEntry | undefined, deviceId: string) => DirectoryEntry | null | undefined,
  ): Promise<void> {
    if (deviceIds.length === 0) return;
    const byShard = new Map<string, string[]>();
    for (const deviceId of new Set(deviceIds)) {
      const id = shardId(tenantId, shardOf(deviceId));
      byShard.set(id, [...(byShard.get(id) ?? []), deviceId]);
    }
    await this.exclusively([...byShard.keys()], async () => {
      const stored = new Map((await pointReads(this.shards, [...byShard.keys()])).map((doc) => [doc._id, doc]));
      const changed: Array<[string, Record<string, PackedEntry>]> = [];
      for (const [id, ids] of byShard) {
        const entries = JSON.parse(stored.get(id)?.e ?? "{}") as Record<string, PackedEntry>;
        let dirty = false;
        for (const deviceId of ids) {
          const packed = entries[deviceId];
          const entry = next(packed && unpack(deviceId, packed), deviceId);
          if (entry === undefined) continue;
          if (entry === null) delete entries[deviceId];
          else entries[deviceId] = pack(entry);
          dirty = true;
        }
        if (dirty) changed.push([id, entries]);
      }
      await this.write(tenantId, changed);
    });
  }

  private async write(tenantId: string, shards: Array<[string, Record<string, PackedEntry>]>): Promise<void> {
    await boundedBulkWrite(
      this.shards,
      shards.map(([_id, entries]) => ({
        replaceOne: { filter: { _id }, replacement: { _id, tenantId, e: JSON.stringify(entries) }, upsert: true },
      })),
    );
  }

  /** Runs `work` once no other write of this process holds any of these shards, holding them meanwhile. */
  private async exclusively<T>(ids: string[], work: () => Promise<T>): Promise<T> {
    let held = writing.get(this.db);
    if (!held) {
      held = new Map();
      writing.set(this.db, held);
    }
    const locks = held;
    const before = ids.map((id) => locks.get(id) ?? Promise.resolve());
    const done = Promise.allSettled(before).then(work);
    const settled = done.catch(() => undefined);
    for (const id of ids) locks.set(id, settled);
    try {
      return await done;
    } finally {
      for (const id of ids) if (locks.get(id) === settled) locks.delete(id);
    }
  }
}
