// Telemetry storage, designed for FerretDB v1 on SQLite as much as MongoDB:
// every read and write goes by `_id` (FerretDB pushes nothing else down, and
// its updates are read-modify-write, not atomic), and the only operation that
// must be atomic under concurrency is a unique-key insert.
//
// Ingest (the hot path) is one insert per request, whatever its size: a
// journal document holding the request's samples, packed in one string. Once it is written the
// samples are durable and the request is answered; duplicates (a gateway
// retry, a device replaying its flash buffer) are journalled like anything
// else and found when the journal is applied.
//
// Applying the journal (one process at a time, under a SlotLease) writes the
// read-optimised forms, then deletes the journal documents:
// - raw buckets, one per device per hour, samples keyed `<boot>-<seq>`: a
//   sample already there is a duplicate, counted and not stored again, and
//   re-applying a journal document (a crash before it was deleted) overwrites
//   what it wrote the first time. The samples are stored packed in one JSON
//   string: nothing queries inside them, and FerretDB converts a nested
//   document field by field (a 1,400-sample hour: 78 ms to read as documents,
//   6.5 ms as a string);
// - rollups recomputed from the bucket (never incremented), so they count each
//   stored sample exactly once: 1m per device per hour, 1h per device per day,
//   1d per device per year, count/sum/min/max per metric;
// - per device, the latest value of every metric and how many samples were
//   stored and how many arrived again.
// Because only the lease holder writes these, its read-then-replace cannot
// race. Reads apply what is pending first (settle), so this process reads its
// writes.

import { setTimeout as sleep } from "node:timers/promises";
import type { TelemetryBatch } from "@kestrel/wire";
import { type Collection, type Db, ObjectId } from "mongodb";
import { DeviceStore } from "../devices/device-store.ts";
import type { LatestSample } from "../devices/device-view.ts";
import { SlotLease } from "../retention/lease.ts";
import { boundedBulkWrite, MAX_POOL_SIZE } from "../storage/command-bounds.ts";
import { pointReads } from "../storage/point-reads.ts";
import { PoolShare, withinShare } from "../storage/pool-share.ts";
import type { HistorySample } from "./history-schema.ts";
import {
  type Buckets,
  DAY_MS,
  floorTo,
  HOUR_MS,
  type MetricAggs,
  MINUTE_MS,
  mergeAll,
  rollUpSamples,
} from "./rollups.ts";

export { HOUR_MS } from "./rollups.ts";

/**
 * Samples one pass takes at most (whole journal documents, at least one): bounds its memory. A
 * pass's writes grow with the devices and hours it touches, not with its samples, so while applying
 * runs behind (a large fleet), a pass that takes more of the backlog applies more per write and the
 * lag stays bounded; a pass of a fixed few documents fell behind for good.
 */
export const PASS_SAMPLES = 60_000;
/** Journal documents one pass takes at most, read JOURNAL_PAGE at a time. */
const JOURNAL_BATCH = 500;
const JOURNAL_PAGE = 50;
const APPLY_LEASE_MS = 30_000;
const APPLY_JOB = "telemetry-apply";
/** A pass starts only with this long left under the lease (the lease is extended otherwise). */
const APPLY_PASS_MAX_MS = 15_000;
/** The longest a read waits for this process's journalled telemetry to be applied (see settleForRead). */
export const READ_SETTLE_MAX_MS = 1_000;
const LAGGING_ROUND_MS = 500;
/** How often a run waiting for another replica to apply the journal looks again. */
const JOURNAL_RECHECK_MS = 250;
/**
 * Connections a pass (its reads and writes, the device updates and alert evaluation it calls) holds
 * at once: half the pool, so requests arriving during a pass find a connection free rather than
 * queueing behind the pass's commands (under a 1,000-device fleet the pass ran up to 24 commands at
 * once on a pool of 12, and the API's p99 followed).
 */
export const APPLY_CONNECTIONS = MAX_POOL_SIZE / 2;

interface StoredSample {
  ts: number;
  m: Record<string, number>;
}

/** An hour's samples by `<boot>-<seq>`. */
type HourSamples = Record<string, StoredSample>;

interface BucketDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  /** Start of the hour, epoch ms. */
  hour: number;
  /** The hour's samples, packed: JSON of HourSamples. */
  s: string;
  /** The 1m rollups of the hour, recomputed from `s` whenever it changes. */
  r: Buckets;
  /** The sample keys the last write added, by journal document (see `apply`); packed like `s`. */
  j?: string;
}

interface IncomingBucket {
  tenantId: string;
  deviceId: string;
  hour: number;
  s: HourSamples;
  /** Per sample key, the journal document it comes from (absent for an import). */
  from: Record<string, string>;
  /** Sample keys already counted for their device by an earlier attempt of this pass (see `apply`). */
  counted: Set<string>;
}

function unpack(packed: string | undefined): HourSamples {
  return packed === undefined ? {} : (JSON.parse(packed) as HourSamples);
}

type JournalItems = Array<{ deviceId: string; boot: number; samples: TelemetryBatch["samples"] }>;

interface JournalDoc {
  _id: ObjectId;
  tenantId: string;
  /** When it was journalled, epoch ms (the ObjectId's own time has whole seconds; absent on older documents). */
  at?: number;
  /** JSON of JournalItems, packed like the buckets' samples (documents from before that were arrays). */
  items: string | JournalItems;
}

/** A journal document as a pass holds it. */
type PendingDoc = Omit<JournalDoc, "items"> & { items: JournalItems };

export type RollupLevel = "1m" | "1h" | "1d";

export const LEVEL_MS: Record<RollupLevel, number> = { "1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS };

interface RollupDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  level: RollupLevel;
  /** Start of the span the document covers (hour, day, year), epoch ms. */
  start: number;
  b: Buckets;
}

interface LatestDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  m: Record<string, { v: number; ts: number }>;
  /** Distinct samples stored for the device, and samples that arrived again after that (absent before counting). */
  stored?: number;
  duplicates?: number;
  /** The journal documents the last write counted (see `apply`). */
  j?: string[];
}

export interface DeviceBatch {
  deviceId: string;
  batch: TelemetryBatch;
}

export interface StoreResult {
  /** Samples journalled (durable; duplicates among them are found when the journal is applied). */
  accepted: number;
}

export interface LatestValues {
  deviceId: string;
  metrics: Record<string, { value: number; ts: number }>;
  /** Distinct samples stored, and samples received again after they were stored (counted when applied). */
  samples: { stored: number; duplicates: number };
}

export function hourStart(ts: number): number {
  return floorTo(ts, HOUR_MS);
}

function yearStart(ts: number): number {
  return Date.UTC(new Date(ts).getUTCFullYear(), 0, 1);
}

/** Start of the span one rollup document of a level covers. */
export function rollupDocStart(level: RollupLevel, ts: number): number {
  if (level === "1m") return hourStart(ts);
  if (level === "1h") return floorTo(ts, DAY_MS);
  return yearStart(ts);
}

function nextDocStart(level: RollupLevel, start: number): number {
  if (level === "1m") return start + HOUR_MS;
  if (level === "1h") return start + DAY_MS;
  return Date.UTC(new Date(start).getUTCFullYear() + 1, 0, 1);
}

function key(...parts: Array<string | number>): string {
  return parts.join("|");
}

/** A bucket id's parts: tenant, device, hour (tenant and device ids hold no "|"). */
function splitBucketId(id: string): [string, string, number] {
  const [tenantId = "", deviceId = "", hour = "0"] = id.split("|");
  return [tenantId, deviceId, Number(hour)];
}

/** What a pass or an import read before merging: buckets and rollup documents by id. */
interface StoredForMerge {
  buckets: Map<string, BucketDoc>;
  rollups: Map<string, RollupDoc>;
}

/** The documents a merge writes, and the repeats it found per device. */
interface Merged {
  buckets: BucketDoc[];
  rollups: RollupDoc[];
  again: Map<string, number>;
}

/** Waits for every promise; then throws the first failure, if any. */
async function allSettledOrThrow(work: Array<Promise<unknown>>): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((outcome) => outcome.status === "rejected");
  if (failed) throw failed.reason;
}

// Per database, in this process: the pass queue (passes never overlap, whichever store runs them),
// whether this process journalled something since its last pass began, and whether it is closing.
const applying = new WeakMap<Db, Promise<void>>();
const journalled = new WeakSet<Db>();
const stopped = new WeakSet<Db>();
/** Per database, in this process: when the round in progress started, and how long the last one took. */
const rounds = new WeakMap<Db, { startedAt: number | undefined; lastMs: number }>();
/** Per database, in this process: the share of the pool its passes use (APPLY_CONNECTIONS). */
const passShares = new WeakMap<Db, PoolShare>();

/** What one apply pass stored: the samples new to the store (not those stored before), per device. */
export interface AppliedPass {
  /** When each applied journal document was written, epoch ms. */
  journalledAt: number[];
  /** The apply lease's tenure in this process (`SlotLease.tenure`): observers' memory of earlier passes holds while it does. */
  tenure: number;
  /**
   * Per device, its new samples, each with the journal document it came from: a pass that failed
   * after its observers saw it is applied again with the same documents (observers may skip those).
   */
  devices: Array<{ tenantId: string; deviceId: string; samples: Array<StoredSample & { journalId: string }> }>;
}

/** Called after each pass has stored its samples, before its journal documents are deleted. */
export type ApplyObserver = (pass: AppliedPass) => Promise<void>;

const observers = new WeakMap<Db, Set<ApplyObserver>>();

export class TelemetryStore {
  private readonly buckets: Collection<BucketDoc>;
  private readonly journal: Collection<JournalDoc>;
  private readonly rollups: Collection<RollupDoc>;
  private readonly latest: Collection<LatestDoc>;
  private readonly lease: SlotLease;
  private readonly devices: DeviceStore;

  constructor(private readonly db: Db) {
    this.devices = new DeviceStore(db);
    this.buckets = db.collection<BucketDoc>("telemetry_buckets");
    this.journal = db.collection<JournalDoc>("telemetry_journal");
    this.rollups = db.collection<RollupDoc>("telemetry_rollups");
    this.latest = db.collection<LatestDoc>("telemetry_latest");
    this.lease = new SlotLease(db, APPLY_JOB, APPLY_LEASE_MS);
  }

  /**
   * Calls `observer` after every pass that applies journalled telemetry in this process (alert
   * evaluation, metrics): streaming, under the apply lease. Answers the unsubscribe.
   */
  static observe(db: Db, observer: ApplyObserver): () => void {
    const set = observers.get(db) ?? new Set();
    observers.set(db, set);
    set.add(observer);
    return () => set.delete(observer);
  }

  static async createIndexes(db: Db): Promise<void> {
    // For retention; reads and writes go by _id.
    await db.collection<BucketDoc>("telemetry_buckets").createIndex({ tenantId: 1, deviceId: 1, hour: 1 });
    await db.collection<RollupDoc>("telemetry_rollups").createIndex({ tenantId: 1, level: 1, start: 1 });
    await db.collection<LatestDoc>("telemetry_latest").createIndex({ tenantId: 1 });
  }

  /** Journals the batches of devices already known to belong to the tenant; answers once they are durable. */
  async store(tenantId: string, batches: DeviceBatch[]): Promise<StoreResult> {
    let accepted = 0;
    for (const { batch } of batches) accepted += batch.samples.length;
    if (accepted === 0) return { accepted };
    await this.journal.insertOne({
      _id: new ObjectId(),
      tenantId,
      at: Date.now(),
      items: JSON.stringify(
        batches.map(({ deviceId, batch }) => ({ deviceId, boot: batch.boot, samples: batch.samples })),
      ),
    });
    journalled.add(this.db);
    return { accepted };
  }

  /**
   * Applies the journal until it is empty, if this process holds the apply lease (else another
   * replica applies it). Resolves once what was journalled before the call is applied. Cheap when
   * this process journalled nothing since: reads call it to see their own writes.
   */
  settle(): Promise<void> {
    const previous = applying.get(this.db) ?? Promise.resolve();
    if (!journalled.has(this.db)) return previous;
    return this.applyPending();
  }

  /**
   * settle(), bounded for a read: waits at most READ_SETTLE_MAX_MS, and not at all while applying
   * runs behind (a round takes longer than LAGGING_ROUND_MS, as under a large fleet's load, where
   * every read would otherwise wait a round): the read then sees what is applied, the apply lag
   * behind. A failed pass is logged by the applier; the read goes to the database itself.
   */
  async settleForRead(): Promise<void> {
    if (this.lagging(LAGGING_ROUND_MS)) return;
    const waited = new AbortController();
    await Promise.race([
      this.settle().catch(() => undefined),
      sleep(READ_SETTLE_MAX_MS, undefined, { signal: waited.signal }).catch(() => undefined),
    ]);
    waited.abort();
  }

  /**
   * Applies the journal until it holds nothing written before `before`, by any replica: this
   * process applies it when it can take the lease, else waits for the holder. False when that did
   * not happen within timeoutMs.
   */
  async appliedBefore(before: Date, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    // ObjectIds hold whole seconds: everything written up to the end of `before`'s second.
    const bound = ObjectId.createFromTime(Math.floor(before.getTime() / 1000) + 1);
    for (;;) {
      await this.applyPending();
      if (!(await this.journal.findOne({ _id: { $lt: bound } }, { projection: { _id: 1 } }))) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, JOURNAL_RECHECK_MS));
    }
  }

  /** Applies whatever the journal holds, from any replica (the periodic pass). */
  applyPending(): Promise<void> {
    return this.applying(() => {
      journalled.delete(this.db);
      return this.applyAll();
    });
  }

  /** Lets passes run (again) in this process: the API calls it when it starts. */
  startPasses(): void {
    stopped.delete(this.db);
  }

  /**
   * Ends this process's passes after the batch in hand and waits for that, `deadlineMs` at most.
   * What is left stays journalled, for the next pass of any replica (or of this one restarted).
   */
  async stopPasses(deadlineMs: number): Promise<void> {
    stopped.add(this.db);
    const waited = new AbortController();
    await Promise.race([
      (applying.get(this.db) ?? Promise.resolve()).catch(() => undefined),
      sleep(deadlineMs, undefined, { signal: waited.signal }).catch(() => undefined),
    ]);
    waited.abort();
  }

  /**
   * True while this process applies slower than `thresholdMs` a round (one batch of the journal):
   * the round in progress has run that long, or the last one took that long.
   */
  private lagging(thresholdMs: number): boolean {
    const round = rounds.get(this.db);
    if (!round) return false;
    return round.lastMs > thresholdMs || (round.startedAt !== undefined && Date.now() - round.startedAt > thresholdMs);
  }

  private applyAll(): Promise<void> {
    const share = passShares.get(this.db) ?? new PoolShare(APPLY_CONNECTIONS);
    passShares.set(this.db, share);
    return withinShare(share, () => this.applyRounds());
  }

  private async applyRounds(): Promise<void> {
    const round = rounds.get(this.db) ?? { startedAt: undefined, lastMs: 0 };
    rounds.set(this.db, round);
    while (!stopped.has(this.db) && (await this.lease.acquire(APPLY_PASS_MAX_MS))) {
      round.startedAt = Date.now();
      try {
        const docs = await this.nextPass();
        if (docs.length === 0) return;
        await this.apply(docs);
        // One delete by _id each: FerretDB looks `_id` equality up by index but scans for `$in`.
        await boundedBulkWrite(
          this.journal,
          docs.map(({ _id }) => ({ deleteOne: { filter: { _id } } })),
        );
      } finally {
        round.lastMs = Date.now() - round.startedAt;
        round.startedAt = undefined;
      }
    }
  }

  /**
   * One pass: each touched hourly bucket is read, merged and replaced with its minute rollups
   * recomputed; then the touched days' hour rollups and years' day rollups; then the devices'
   * latest sample. Replacing whole documents is safe because only the lease holder writes them.
   *
   * A pass that fails midway (the database stalls) leaves its journal documents, and the next pass
   * applies them again, on top of what the failed one wrote. For the samples that changes nothing;
   * for the per-device counts it would, so each bucket and each device's counts remember which
   * journal documents their last write came from (`j`): a sample found in its bucket is counted as
   * received again only if another journal document put it there, and a device's counts skip the
   * journal documents they counted already. (A failed pass's documents are the oldest left, so the
   * next pass always holds them again.)
   */
  private async apply(docs: PendingDoc[]): Promise<void> {
    const incoming = new Map<string, IncomingBucket>();
    const newest = new Map<string, { tenantId: string; deviceId: string; sample: LatestSample }>();
    const latest = new Map<string, LatestDoc>();
    const parsed = docs.map(({ _id, tenantId, items }) => ({ journalId: _id.toHexString(), tenantId, items }));
    // Everything the pass reads, read at once: latest values and counts, buckets and their rollups.
    const deviceKeys = new Set<string>();
    const bucketIds = new Set<string>();
    for (const { tenantId, items } of parsed) {
      for (const { deviceId, samples } of items) {
        deviceKeys.add(key(tenantId, deviceId));
        for (const { ts } of samples) bucketIds.add(key(tenantId, deviceId, hourStart(ts)));
      }
    }
    const [previousDocs, stored] = await Promise.all([
      pointReads(this.latest, [...deviceKeys]),
      this.readStored([...bucketIds]),
    ]);
    const previous = new Map(previousDocs.map((doc) => [doc._id, doc]));
    for (const { journalId, tenantId, items } of parsed) {
      for (const { deviceId, boot, samples } of items) {
        const deviceKey = key(tenantId, deviceId);
        const values = latest.get(deviceKey) ?? {
          _id: deviceKey,
          tenantId,
          deviceId,
          m: {},
          stored: 0,
          duplicates: 0,
          j: [],
        };
        latest.set(deviceKey, values);
        if (!values.j?.includes(journalId)) values.j?.push(journalId);
        const countedBefore = previous.get(deviceKey)?.j?.includes(journalId) ?? false;
        for (const { seq, ts, m } of samples) {
          const hour = hourStart(ts);
          const id = key(tenantId, deviceId, hour);
          const bucket = incoming.get(id) ?? { tenantId, deviceId, hour, s: {}, from: {}, counted: new Set() };
          incoming.set(id, bucket);
          const sampleKey = `${boot}-${seq}`;
          if (bucket.s[sampleKey]) {
            // Twice in this pass: the first one stands, as it would had it been stored already.
            if (!countedBefore) values.duplicates = (values.duplicates ?? 0) + 1;
            continue;
          }
          bucket.s[sampleKey] = { ts, m };
          bucket.from[sampleKey] = journalId;
          if (countedBefore) bucket.counted.add(sampleKey);
          else values.stored = (values.stored ?? 0) + 1;
          for (const [name, v] of Object.entries(m)) {
            const current = values.m[name];
            if (!current || ts >= current.ts) values.m[name] = { v, ts };
          }
          const device = newest.get(deviceKey);
          if (!device || ts > device.sample.ts) newest.set(deviceKey, { tenantId, deviceId, sample: { ts, m } });
        }
      }
    }
    const merged = this.merge(incoming, stored);
    for (const [deviceKey, again] of merged.again) {
      const values = latest.get(deviceKey);
      if (!values) continue;
      values.stored = (values.stored ?? 0) - again;
      values.duplicates = (values.duplicates ?? 0) + again;
    }
    const newestBefore = this.mergeLatest([...latest.values()], previous);
    const now = Date.now();
    // Every write of the pass at once. Their order does not matter: a failure leaves the journal, and
    // the next pass writes again what is missing (see above); all end before the next pass reads.
    await allSettledOrThrow([
      this.writeMerged(merged),
      this.replaceAll(this.latest, [...latest.values()]),
      // lastSeen moves to the newest sample, but never past now; `latest` only to a newer sample than stored.
      this.devices.recordTelemetry(
        [...newest].map(([deviceKey, { tenantId, deviceId, sample }]) => ({
          tenantId,
          deviceId,
          seenAt: new Date(Math.min(sample.ts, now)),
          latest: sample.ts > (newestBefore.get(deviceKey) ?? Number.NEGATIVE_INFINITY) ? sample : undefined,
        })),
      ),
    ]);
    // What this pass stored anew (merge left only that in the incoming buckets): a sample sent or
    // applied again is not shown twice.
    const applied = new Map<string, AppliedPass["devices"][number]>();
    for (const { tenantId, deviceId, s, from } of incoming.values()) {
      const deviceKey = key(tenantId, deviceId);
      const observed = applied.get(deviceKey) ?? { tenantId, deviceId, samples: [] };
      applied.set(deviceKey, observed);
      for (const [sampleKey, sample] of Object.entries(s))
        observed.samples.push({ ...sample, journalId: from[sampleKey] ?? "" });
    }
    const pass: AppliedPass = {
      journalledAt: docs.map(({ _id, at }) => at ?? _id.getTimestamp().getTime()),
      tenure: SlotLease.tenure(this.db, APPLY_JOB),
      devices: [...applied.values()],
    };
    for (const observer of observers.get(this.db) ?? []) await observer(pass);
  }

  /** The journal documents of the next pass, their items parsed: as many as hold PASS_SAMPLES samples, at least one. */
  private async nextPass(): Promise<PendingDoc[]> {
    const docs: PendingDoc[] = [];
    let samples = 0;
    const cursor = this.journal.find({}).limit(JOURNAL_BATCH).batchSize(JOURNAL_PAGE);
    try {
      for await (const { items, ...doc } of cursor) {
        const parsed = typeof items === "string" ? (JSON.parse(items) as JournalItems) : items;
        const count = parsed.reduce((sum, item) => sum + item.samples.length, 0);
        // Past the budget: left for the next pass, which it starts (the journal is read oldest first).
        if (docs.length > 0 && samples + count > PASS_SAMPLES) break;
        docs.push({ ...doc, items: parsed });
        samples += count;
      }
    } finally {
      await cursor.close();
    }
    return docs;
  }

  /** The stored buckets with these ids, and the hour and day rollup documents they sum up into. */
  private async readStored(bucketIds: string[]): Promise<StoredForMerge> {
    const rollupIds = new Set<string>();
    for (const id of bucketIds) {
      const [tenantId, deviceId, hour] = splitBucketId(id);
      rollupIds.add(key("1h", tenantId, deviceId, rollupDocStart("1h", hour)));
      rollupIds.add(key("1d", tenantId, deviceId, rollupDocStart("1d", hour)));
    }
    const [buckets, rollups] = await Promise.all([
      pointReads(this.buckets, bucketIds),
      pointReads(this.rollups, [...rollupIds]),
    ]);
    return {
      buckets: new Map(buckets.map((doc) => [doc._id, doc])),
      rollups: new Map(rollups.map((doc) => [doc._id, doc])),
    };
  }

  /**
   * Adds samples to their stored hourly buckets (a sample already stored stays as it is) and
   * recomputes every rollup level over them: the documents to write, and, per device
   * (`<tenant>|<device>`), how many of the incoming samples, not counted yet, were stored already by
   * another journal document. Leaves in each incoming bucket only the samples no other journal
   * document stored (what the apply observers are shown).
   */
  private merge(incoming: Map<string, IncomingBucket>, stored: StoredForMerge): Merged {
    const buckets: BucketDoc[] = [];
    const again = new Map<string, number>();
    for (const [_id, { tenantId, deviceId, hour, s, from, counted }] of incoming) {
      const doc = stored.buckets.get(_id);
      const before = unpack(doc?.s);
      const addedBefore = doc?.j === undefined ? {} : (JSON.parse(doc.j) as Record<string, string[]>);
      const added: Record<string, string[]> = {};
      const repeated: string[] = [];
      for (const sampleKey of Object.keys(s)) {
        const journalId = from[sampleKey];
        if (!before[sampleKey]) {
          if (journalId !== undefined) {
            const keys = added[journalId] ?? [];
            keys.push(sampleKey);
            added[journalId] = keys;
          }
          continue;
        }
        // Added by this very journal document in a pass that failed afterwards: not a repeat.
        const ownEarlierWrite = journalId !== undefined && (addedBefore[journalId]?.includes(sampleKey) ?? false);
        if (!ownEarlierWrite && !counted.has(sampleKey)) repeated.push(sampleKey);
      }
      if (repeated.length > 0) {
        const deviceKey = key(tenantId, deviceId);
        again.set(deviceKey, (again.get(deviceKey) ?? 0) + repeated.length);
      }
      const gains = Object.keys(s).some((sampleKey) => !before[sampleKey]);
      const merged = { ...s, ...before };
      for (const sampleKey of repeated) delete s[sampleKey];
      // Only a bucket that gains samples is written (and its rollups recomputed).
      if (!gains) continue;
      const r = rollUpSamples(Object.values(merged), MINUTE_MS);
      buckets.push({ _id, tenantId, deviceId, hour, s: JSON.stringify(merged), r, j: JSON.stringify(added) });
    }
    const days = this.rollUp("1h", buckets, (bucket) => [bucket.hour, mergeAll(bucket.r)], stored.rollups);
    const years = this.rollUp("1d", days, (day) => [day.start, mergeAll(day.b)], stored.rollups);
    return { buckets, rollups: [...days, ...years], again };
  }

  private async writeMerged({ buckets, rollups }: Merged): Promise<void> {
    await allSettledOrThrow([this.replaceAll(this.buckets, buckets), this.replaceAll(this.rollups, rollups)]);
  }

  /**
   * Bulk import of one device's history, straight into buckets and rollups: no journal and no
   * latest values or sample counts. For benchmarks and migrations;
   * call it with a day or so of samples at a time to bound memory.
   */
  async importSamples(tenantId: string, deviceId: string, samples: Iterable<HistorySample>): Promise<void> {
    const incoming = new Map<string, IncomingBucket>();
    for (const { boot, seq, ts, m } of samples) {
      const hour = hourStart(ts);
      const id = key(tenantId, deviceId, hour);
      const bucket = incoming.get(id) ?? { tenantId, deviceId, hour, s: {}, from: {}, counted: new Set() };
      incoming.set(id, bucket);
      bucket.s[`${boot}-${seq}`] = { ts, m };
    }
    await this.applying(async () => {
      await this.writeMerged(this.merge(incoming, await this.readStored([...incoming.keys()])));
    });
  }

  /** Runs work in this process's pass queue, so it never overlaps a journal pass. */
  private applying(work: () => Promise<void>): Promise<void> {
    const previous = applying.get(this.db) ?? Promise.resolve();
    const next = previous.then(work);
    applying.set(
      this.db,
      next.catch(() => undefined),
    );
    return next;
  }

  /** The `level` documents, from `stored`, with the aggregate each finer document sums up to set. */
  private rollUp<T extends { tenantId: string; deviceId: string }>(
    level: "1h" | "1d",
    finer: T[],
    aggregate: (doc: T) => [number, MetricAggs],
    stored: Map<string, RollupDoc>,
  ): RollupDoc[] {
    const updates = new Map<string, RollupDoc>();
    for (const doc of finer) {
      const [start, aggs] = aggregate(doc);
      const docStart = rollupDocStart(level, start);
      const _id = key(level, doc.tenantId, doc.deviceId, docStart);
      const update = updates.get(_id) ?? {
        _id,
        tenantId: doc.tenantId,
        deviceId: doc.deviceId,
        level,
        start: docStart,
        b: {},
      };
      updates.set(_id, update);
      update.b[start] = aggs;
    }
    return [...updates.values()].map((update) => ({ ...update, b: { ...stored.get(update._id)?.b, ...update.b } }));
  }

  /**
   * Merges the pass's latest values and counts into `updates` (written by the caller) from the stored
   * ones; answers each device's newest sample time before.
   */
  private mergeLatest(updates: LatestDoc[], previous: Map<string, LatestDoc>): Map<string, number> {
    const newestBefore = new Map<string, number>();
    for (const update of updates) {
      const before = previous.get(update._id);
      // The newest sample holds the latest value of each of its metrics, so its time is the largest of theirs.
      if (before) newestBefore.set(update._id, Math.max(...Object.values(before.m).map(({ ts }) => ts)));
      const m = { ...before?.m };
      for (const [name, value] of Object.entries(update.m)) {
        const current = m[name];
        if (!current || value.ts >= current.ts) m[name] = value;
      }
      update.m = m;
      update.stored = (before?.stored ?? 0) + (update.stored ?? 0);
      update.duplicates = (before?.duplicates ?? 0) + (update.duplicates ?? 0);
    }
    return newestBefore;
  }

  private async replaceAll<T extends { _id: string }>(collection: Collection<T>, docs: T[]): Promise<void> {
    await boundedBulkWrite(
      collection,
      docs.map((doc) => ({ replaceOne: { filter: { _id: doc._id }, replacement: doc, upsert: true } })) as never,
    );
  }

  /** True once nothing journalled is left to apply (benchmarks wait on it). */
  async applied(): Promise<boolean> {
    return (await this.journal.findOne({})) === null;
  }

  /**
   * Raw samples of one device with from <= ts < to, ordered by ts, boot, seq, an hourly bucket at a
   * time: memory holds one bucket, however long the range (exports stream from this).
   * The caller must already know the device belongs to the tenant.
   */
  async *iterateHours(tenantId: string, deviceId: string, from: number, to: number): AsyncGenerator<HistorySample[]> {
    await this.settleForRead();
    for (let hour = hourStart(from); hour < to; hour += HOUR_MS) {
      // Read in a call of its own: the bucket document is not kept alive by this generator while it waits.
      const samples = await this.hourSamples(key(tenantId, deviceId, hour), from, to);
      if (samples.length > 0) yield samples;
    }
  }

  private async hourSamples(id: string, from: number, to: number): Promise<HistorySample[]> {
    const doc = await this.buckets.findOne({ _id: id }, { projection: { s: 1 } });
    return doc ? bucketSamples(doc, from, to) : [];
  }

  /** Samples with from <= ts < to, ordered by ts, boot, seq. */
  async read(tenantId: string, deviceId: string, from: number, to: number): Promise<HistorySample[]> {
    await this.settleForRead();
    const ids: string[] = [];
    for (let hour = hourStart(from); hour < to; hour += HOUR_MS) ids.push(key(tenantId, deviceId, hour));
    const samples: HistorySample[] = [];
    for (const doc of await pointReads(this.buckets, ids)) samples.push(...bucketSamples(doc, from, to));
    return samples.sort(bySampleOrder);
  }

  /** Rollup buckets of one level whose documents overlap [from, to) (bucket key: start, epoch ms). */
  async readRollups(
    tenantId: string,
    deviceId: string,
    level: RollupLevel,
    from: number,
    to: number,
  ): Promise<Buckets> {
    await this.settleForRead();
    const starts: number[] = [];
    for (let start = rollupDocStart(level, from); start < to; start = nextDocStart(level, start)) starts.push(start);
    const buckets: Buckets = {};
    if (level === "1m") {
      // Minute rollups live in the hourly raw buckets, next to what they sum up.
      const ids = starts.map((start) => key(tenantId, deviceId, start));
      for (const doc of await pointReads(this.buckets, ids, { r: 1 })) Object.assign(buckets, doc.r);
    } else {
      const ids = starts.map((start) => key(level, tenantId, deviceId, start));
      for (const doc of await pointReads(this.rollups, ids)) Object.assign(buckets, doc.b);
    }
    return buckets;
  }

  /** Latest value of every metric of the given devices (those with telemetry), or of all the tenant's devices. */
  async readLatest(tenantId: string, deviceIds: string[] | undefined, limit: number): Promise<LatestValues[]> {
    await this.settleForRead();
    const docs = deviceIds
      ? await pointReads(
          this.latest,
          deviceIds.map((deviceId) => key(tenantId, deviceId)),
        )
      : await this.latest.find({ tenantId }).limit(limit).toArray();
    return docs
      .map(({ deviceId, m, stored, duplicates }) => ({
        deviceId,
        metrics: Object.fromEntries(Object.entries(m).map(([name, { v, ts }]) => [name, { value: v, ts }])),
        samples: { stored: stored ?? 0, duplicates: duplicates ?? 0 },
      }))
      .sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  }
}

/** A bucket's samples inside [from, to), ordered by ts, boot, seq. */
function bucketSamples(doc: Pick<BucketDoc, "s">, from: number, to: number): HistorySample[] {
  const samples: HistorySample[] = [];
  for (const [sampleKey, { ts, m }] of Object.entries(unpack(doc.s))) {
    if (ts < from || ts >= to) continue;
    const dash = sampleKey.indexOf("-");
    samples.push({ boot: Number(sampleKey.slice(0, dash)), seq: Number(sampleKey.slice(dash + 1)), ts, m });
  }
  return samples.sort(bySampleOrder);
}

function bySampleOrder(a: HistorySample, b: HistorySample): number {
  return a.ts - b.ts || a.boot - b.boot || a.seq - b.seq;
}
