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

import type { TelemetryBatch } from "@kestrel/wire";
import { type Collection, type Db, ObjectId } from "mongodb";
import { DeviceStore } from "../devices/device-store.ts";
import type { LatestSample } from "../devices/device-view.ts";
import { SlotLease } from "../retention/lease.ts";
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

// Point reads in flight at once.
const READ_CONCURRENCY = 16;
/** Journal documents applied per pass: bounds a pass's memory and time. */
const JOURNAL_BATCH = 50;
const APPLY_LEASE_MS = 30_000;
/** A pass starts only with this long left under the lease (the lease is extended otherwise). */
const APPLY_PASS_MAX_MS = 15_000;
/** How often a run waiting for another replica to apply the journal looks again. */
const JOURNAL_RECHECK_MS = 250;

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
}

interface IncomingBucket {
  tenantId: string;
  deviceId: string;
  hour: number;
  s: HourSamples;
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

// Per database, in this process: the pass queue (passes never overlap, whichever store runs them)
// and whether this process journalled something since its last pass began.
const applying = new WeakMap<Db, Promise<void>>();
const journalled = new WeakSet<Db>();

/** What one apply pass stored: the samples new to the store (not those stored before), per device. */
export interface AppliedPass {
  /** When each applied journal document was written, epoch ms. */
  journalledAt: number[];
  devices: Array<{ tenantId: string; deviceId: string; samples: StoredSample[] }>;
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
    this.lease = new SlotLease(db, "telemetry-apply", APPLY_LEASE_MS);
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

  private async applyAll(): Promise<void> {
    while (await this.lease.acquire(APPLY_PASS_MAX_MS)) {
      const docs = await this.journal.find({}).limit(JOURNAL_BATCH).toArray();
      if (docs.length === 0) return;
      await this.apply(docs);
      // One delete by _id each: FerretDB looks `_id` equality up by index but scans for `$in`.
      await this.journal.bulkWrite(
        docs.map(({ _id }) => ({ deleteOne: { filter: { _id } } })),
        { ordered: false },
      );
    }
  }

  /**
   * One pass: each touched hourly bucket is read, merged and replaced with its minute rollups
   * recomputed; then the touched days' hour rollups and years' day rollups; then the devices'
   * latest sample. Replacing whole documents is safe because only the lease holder writes them.
   */
  private async apply(docs: JournalDoc[]): Promise<void> {
    const incoming = new Map<string, IncomingBucket>();
    const newest = new Map<string, { tenantId: string; deviceId: string; sample: LatestSample }>();
    const latest = new Map<string, LatestDoc>();
    for (const { tenantId, items } of docs) {
      for (const { deviceId, boot, samples } of typeof items === "string"
        ? (JSON.parse(items) as JournalItems)
        : items) {
        const deviceKey = key(tenantId, deviceId);
        const values = latest.get(deviceKey) ?? { _id: deviceKey, tenantId, deviceId, m: {}, stored: 0, duplicates: 0 };
        latest.set(deviceKey, values);
        for (const { seq, ts, m } of samples) {
          const hour = hourStart(ts);
          const id = key(tenantId, deviceId, hour);
          const bucket = incoming.get(id) ?? { tenantId, deviceId, hour, s: {} };
          incoming.set(id, bucket);
          const sampleKey = `${boot}-${seq}`;
          if (bucket.s[sampleKey]) {
            // Twice in this pass: the first one stands, as it would had it been stored already.
            values.duplicates = (values.duplicates ?? 0) + 1;
            continue;
          }
          bucket.s[sampleKey] = { ts, m };
          values.stored = (values.stored ?? 0) + 1;
          for (const [name, v] of Object.entries(m)) {
            const current = values.m[name];
            if (!current || ts >= current.ts) values.m[name] = { v, ts };
          }
          const device = newest.get(deviceKey);
          if (!device || ts > device.sample.ts) newest.set(deviceKey, { tenantId, deviceId, sample: { ts, m } });
        }
      }
    }
    for (const [deviceKey, again] of await this.writeBuckets(incoming)) {
      const values = latest.get(deviceKey);
      if (!values) continue;
      values.stored = (values.stored ?? 0) - again;
      values.duplicates = (values.duplicates ?? 0) + again;
    }
    const newestBefore = await this.mergeLatest([...latest.values()]);

    const now = Date.now();
    // lastSeen moves to the newest sample, but never past now; `latest` only to a newer sample than stored.
    await Promise.all(
      [...newest].map(([deviceKey, { tenantId, deviceId, sample }]) =>
        this.devices.recordTelemetry(
          tenantId,
          deviceId,
          new Date(Math.min(sample.ts, now)),
          sample.ts > (newestBefore.get(deviceKey) ?? Number.NEGATIVE_INFINITY) ? sample : undefined,
        ),
      ),
    );
    // What this pass stored anew (writeBuckets left only that in the incoming buckets): a sample sent or
    // applied again is not shown twice.
    const applied = new Map<string, AppliedPass["devices"][number]>();
    for (const { tenantId, deviceId, s } of incoming.values()) {
      const deviceKey = key(tenantId, deviceId);
      const observed = applied.get(deviceKey) ?? { tenantId, deviceId, samples: [] };
      applied.set(deviceKey, observed);
      observed.samples.push(...Object.values(s));
    }
    const pass: AppliedPass = {
      journalledAt: docs.map(({ _id, at }) => at ?? _id.getTimestamp().getTime()),
      devices: [...applied.values()],
    };
    for (const observer of observers.get(this.db) ?? []) await observer(pass);
  }

  /**
   * Adds samples to their hourly buckets (a sample already stored stays as it is) and recomputes
   * every rollup level over them. Answers, per device (`<tenant>|<device>`), how many of the
   * incoming samples were stored already, and leaves in each incoming bucket only the samples it
   * stored anew (what the apply observers are shown).
   */
  private async writeBuckets(incoming: Map<string, IncomingBucket>): Promise<Map<string, number>> {
    const stored = new Map((await this.pointReads(this.buckets, [...incoming.keys()])).map((doc) => [doc._id, doc]));
    const buckets: BucketDoc[] = [];
    const again = new Map<string, number>();
    for (const [_id, { tenantId, deviceId, hour, s }] of incoming) {
      const before = unpack(stored.get(_id)?.s);
      const repeated = Object.keys(s).filter((sampleKey) => before[sampleKey]);
      if (repeated.length > 0) {
        const deviceKey = key(tenantId, deviceId);
        again.set(deviceKey, (again.get(deviceKey) ?? 0) + repeated.length);
      }
      const merged = { ...s, ...before };
      for (const sampleKey of repeated) delete s[sampleKey];
      // Only a bucket that gains samples is written (and its rollups recomputed).
      if (Object.keys(s).length === 0) continue;
      const r = rollUpSamples(Object.values(merged), MINUTE_MS);
      buckets.push({ _id, tenantId, deviceId, hour, s: JSON.stringify(merged), r });
    }

    await this.replaceAll(this.buckets, buckets);
    const days = await this.rollUp("1h", buckets, (bucket) => [bucket.hour, mergeAll(bucket.r)]);
    await this.rollUp("1d", days, (day) => [day.start, mergeAll(day.b)]);
    return again;
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
      const bucket = incoming.get(id) ?? { tenantId, deviceId, hour, s: {} };
      incoming.set(id, bucket);
      bucket.s[`${boot}-${seq}`] = { ts, m };
    }
    await this.applying(async () => {
      await this.writeBuckets(incoming);
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

  /** Sets, in the `level` documents, the aggregate each finer document sums up to; answers them. */
  private async rollUp<T extends { tenantId: string; deviceId: string }>(
    level: "1h" | "1d",
    finer: T[],
    aggregate: (doc: T) => [number, MetricAggs],
  ): Promise<RollupDoc[]> {
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
    const stored = new Map((await this.pointReads(this.rollups, [...updates.keys()])).map((doc) => [doc._id, doc]));
    const docs = [...updates.values()].map((update) => ({
      ...update,
      b: { ...stored.get(update._id)?.b, ...update.b },
    }));
    await this.replaceAll(this.rollups, docs);
    return docs;
  }

  /** Merges the pass's latest values into the stored ones; answers each device's newest sample time before. */
  private async mergeLatest(updates: LatestDoc[]): Promise<Map<string, number>> {
    const previous = new Map(
      (
        await this.pointReads(
          this.latest,
          updates.map((u) => u._id),
        )
      ).map((d) => [d._id, d]),
    );
    const newestBefore = new Map<string, number>();
    const docs = updates.map((update) => {
      const before = previous.get(update._id);
      // The newest sample holds the latest value of each of its metrics, so its time is the largest of theirs.
      if (before) newestBefore.set(update._id, Math.max(...Object.values(before.m).map(({ ts }) => ts)));
      const m = { ...before?.m };
      for (const [name, value] of Object.entries(update.m)) {
        const current = m[name];
        if (!current || value.ts >= current.ts) m[name] = value;
      }
      const stored = (before?.stored ?? 0) + (update.stored ?? 0);
      const duplicates = (before?.duplicates ?? 0) + (update.duplicates ?? 0);
      return { ...update, m, stored, duplicates };
    });
    await this.replaceAll(this.latest, docs);
    return newestBefore;
  }

  private async replaceAll<T extends { _id: string }>(collection: Collection<T>, docs: T[]): Promise<void> {
    if (docs.length === 0) return;
    await collection.bulkWrite(
      docs.map((doc) => ({ replaceOne: { filter: { _id: doc._id }, replacement: doc, upsert: true } })) as never,
      { ordered: false },
    );
  }

  private async pointReads<T extends { _id: string }>(
    collection: Collection<T>,
    ids: string[],
    projection?: Record<string, 1>,
  ): Promise<T[]> {
    const found: T[] = [];
    for (let i = 0; i < ids.length; i += READ_CONCURRENCY) {
      const docs = await Promise.all(
        ids
          .slice(i, i + READ_CONCURRENCY)
          .map((_id) => collection.findOne({ _id } as never, { projection }) as Promise<T | null>),
      );
      for (const doc of docs) if (doc) found.push(doc);
    }
    return found;
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
    await this.settle();
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
    await this.settle();
    const ids: string[] = [];
    for (let hour = hourStart(from); hour < to; hour += HOUR_MS) ids.push(key(tenantId, deviceId, hour));
    const samples: HistorySample[] = [];
    for (const doc of await this.pointReads(this.buckets, ids)) samples.push(...bucketSamples(doc, from, to));
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
    await this.settle();
    const starts: number[] = [];
    for (let start = rollupDocStart(level, from); start < to; start = nextDocStart(level, start)) starts.push(start);
    const buckets: Buckets = {};
    if (level === "1m") {
      // Minute rollups live in the hourly raw buckets, next to what they sum up.
      const ids = starts.map((start) => key(tenantId, deviceId, start));
      for (const doc of await this.pointReads(this.buckets, ids, { r: 1 })) Object.assign(buckets, doc.r);
    } else {
      const ids = starts.map((start) => key(level, tenantId, deviceId, start));
      for (const doc of await this.pointReads(this.rollups, ids)) Object.assign(buckets, doc.b);
    }
    return buckets;
  }

  /** Latest value of every metric of the given devices (those with telemetry), or of all the tenant's devices. */
  async readLatest(tenantId: string, deviceIds: string[] | undefined, limit: number): Promise<LatestValues[]> {
    await this.settle();
    const docs = deviceIds
      ? await this.pointReads(
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
