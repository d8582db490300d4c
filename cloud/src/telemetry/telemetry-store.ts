// Raw telemetry in bucket documents, one per device per hour, so that storing
// and charting are point reads and writes by `_id` on MongoDB and FerretDB
// alike. Inside a bucket, samples are keyed `<boot>-<seq>`, so a retried
// sample overwrites itself.
//
// Exact accepted/duplicate counts come from `telemetry_sample_ids`: one tiny
// document per sample, id `<tenant>|<device>|<boot>|<seq>`, inserted with
// insertMany(ordered: false) *after* the bucket write; a duplicate-key error
// marks a sample seen before. Writing the bucket first means a crash between
// the two steps can only make a retry count a stored sample as accepted
// again, never lose a sample that was acknowledged.

import type { TelemetryBatch } from "@kestrel/wire";
import { type AnyBulkWriteOperation, type Collection, type Db, MongoBulkWriteError, type WriteError } from "mongodb";
import type { HistorySample } from "./history-schema.ts";

export const HOUR_MS = 3_600_000;
const DUPLICATE_KEY = 11000;
// Point reads in flight at once for one range query.
const READ_CONCURRENCY = 16;

interface BucketDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  /** Start of the hour, epoch ms. */
  hour: number;
  s: Record<string, { ts: number; m: Record<string, number> }>;
}

interface SampleIdDoc {
  _id: string;
  hour: number;
}

export interface DeviceBatch {
  deviceId: string;
  batch: TelemetryBatch;
}

export interface StoreResult {
  accepted: number;
  duplicates: number;
}

export function hourStart(ts: number): number {
  return ts - (ts % HOUR_MS);
}

function bucketId(tenantId: string, deviceId: string, hour: number): string {
  return `${tenantId}|${deviceId}|${hour}`;
}

export class TelemetryStore {
  private readonly buckets: Collection<BucketDoc>;
  private readonly sampleIds: Collection<SampleIdDoc>;

  constructor(db: Db) {
    this.buckets = db.collection<BucketDoc>("telemetry_buckets");
    this.sampleIds = db.collection<SampleIdDoc>("telemetry_sample_ids");
  }

  static async createIndexes(db: Db): Promise<void> {
    // For retention and per-device export jobs; reads and writes go by _id.
    await db.collection<BucketDoc>("telemetry_buckets").createIndex({ tenantId: 1, deviceId: 1, hour: 1 });
  }

  /** Stores the batches of devices already known to belong to the tenant. */
  async store(tenantId: string, batches: DeviceBatch[]): Promise<StoreResult> {
    const writes = new Map<string, { deviceId: string; hour: number; set: Record<string, unknown> }>();
    const ids: SampleIdDoc[] = [];
    for (const { deviceId, batch } of batches) {
      for (const sample of batch.samples) {
        const hour = hourStart(sample.ts);
        const id = bucketId(tenantId, deviceId, hour);
        let write = writes.get(id);
        if (!write) {
          write = { deviceId, hour, set: {} };
          writes.set(id, write);
        }
        write.set[`s.${batch.boot}-${sample.seq}`] = { ts: sample.ts, m: sample.m };
        ids.push({ _id: `${tenantId}|${deviceId}|${batch.boot}|${sample.seq}`, hour });
      }
    }
    if (ids.length === 0) return { accepted: 0, duplicates: 0 };

    const operations: AnyBulkWriteOperation<BucketDoc>[] = [];
    for (const [id, write] of writes) {
      operations.push({
        updateOne: {
          filter: { _id: id },
          update: { $set: write.set, $setOnInsert: { tenantId, deviceId: write.deviceId, hour: write.hour } },
          upsert: true,
        },
      });
    }
    await this.buckets.bulkWrite(operations, { ordered: false });
    const duplicates = await this.insertSampleIds(ids);
    return { accepted: ids.length - duplicates, duplicates };
  }

  /** Inserts the ids and answers how many were there already. */
  private async insertSampleIds(ids: SampleIdDoc[]): Promise<number> {
    try {
      await this.sampleIds.insertMany(ids, { ordered: false });
      return 0;
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError)) throw error;
      const writeErrors: WriteError[] = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
      if (writeErrors.some((writeError) => writeError.code !== DUPLICATE_KEY)) throw error;
      return writeErrors.length;
    }
  }

  /** Samples with from <= ts < to, ordered by ts, boot, seq. */
  async read(tenantId: string, deviceId: string, from: number, to: number): Promise<HistorySample[]> {
    const ids: string[] = [];
    for (let hour = hourStart(from); hour < to; hour += HOUR_MS) ids.push(bucketId(tenantId, deviceId, hour));
    const samples: HistorySample[] = [];
    for (let i = 0; i < ids.length; i += READ_CONCURRENCY) {
      const docs = await Promise.all(
        ids.slice(i, i + READ_CONCURRENCY).map((_id) => this.buckets.findOne({ _id }, { projection: { s: 1 } })),
      );
      for (const doc of docs) {
        if (!doc) continue;
        for (const [key, { ts, m }] of Object.entries(doc.s)) {
          if (ts < from || ts >= to) continue;
          const dash = key.indexOf("-");
          samples.push({ boot: Number(key.slice(0, dash)), seq: Number(key.slice(dash + 1)), ts, m });
        }
      }
    }
    return samples.sort((a, b) => a.ts - b.ts || a.boot - b.boot || a.seq - b.seq);
  }
}
