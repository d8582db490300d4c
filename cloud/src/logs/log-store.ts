// Device log records, one document per record with id `<tenant>|<device>|<boot>|<seq>`, so a batch
// the gateway forwards again is stored once. Bounded per device: past the cap plus a tenth, the
// oldest records (by device time) are deleted back down to the cap. Counting a device's records is a
// scan of the collection on FerretDB v1, so a process counts only once it stored a tenth of the cap
// for that device since it last counted: a device holds at most the cap plus a tenth, plus a tenth
// per replica storing its logs.

import type { LogBatch, LogLevel, LogRecord } from "@kestrel/wire";
import type { Collection, Db } from "mongodb";
import { boundedInsertMany } from "../storage/command-bounds.ts";

export const MAX_RECORDS_PER_DEVICE = 10_000;
const DUPLICATE_KEY = 11000;

export const SEVERITY: Readonly<Record<LogLevel, number>> = Object.freeze({ debug: 0, info: 1, warn: 2, error: 3 });

export type LogFieldValue = string | number | boolean;

interface LogDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  boot: number;
  seq: number;
  /** Device clock, epoch ms. */
  ts: number;
  level: LogLevel;
  severity: number;
  tag: string;
  msg: string;
  fields: Record<string, LogFieldValue>;
  /** When the gateway received the batch, epoch ms. */
  receivedAt: number;
}

export interface DeviceLogBatch {
  deviceId: string;
  receivedAt: number;
  batch: LogBatch;
}

export interface StoredLogRecord {
  boot: number;
  seq: number;
  ts: number;
  level: LogLevel;
  tag: string;
  msg: string;
  fields: Record<string, LogFieldValue>;
  receivedAt: number;
}

export interface LogQuery {
  /** Records at this level and above. */
  level: LogLevel;
  /** Records with ts >= since. */
  since: number;
  limit: number;
}

function toDoc(tenantId: string, deviceId: string, receivedAt: number, record: LogRecord): LogDoc {
  const { boot, seq, ts, level, tag, msg, ...fields } = record;
  return {
    _id: `${tenantId}|${deviceId}|${boot}|${seq}`,
    tenantId,
    deviceId,
    boot,
    seq,
    ts,
    level,
    severity: SEVERITY[level],
    tag,
    msg,
    fields,
    receivedAt,
  };
}

/** Devices whose tally of records stored since the last count this process keeps. */
const TALLIES_MAX = 100_000;

export class LogStore {
  private readonly logs: Collection<LogDoc>;
  /** Per `<tenant>|<device>`: records this process stored since it last counted the device's. */
  private readonly sinceCount = new Map<string, number>();

  constructor(
    db: Db,
    private readonly maxPerDevice = MAX_RECORDS_PER_DEVICE,
  ) {
    this.logs = db.collection<LogDoc>("device_logs");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<LogDoc>("device_logs").createIndex({ tenantId: 1, deviceId: 1, ts: -1 });
  }

  /** Stores the batches of devices already known to belong to the tenant; answers how many were new. */
  async store(tenantId: string, batches: DeviceLogBatch[]): Promise<{ accepted: number; duplicates: number }> {
    const docs = batches.flatMap(({ deviceId, receivedAt, batch }) =>
      batch.records.map((record) => toDoc(tenantId, deviceId, receivedAt, record)),
    );
    if (docs.length === 0) return { accepted: 0, duplicates: 0 };
    const duplicates = await this.insert(docs);
    const slack = Math.ceil(this.maxPerDevice / 10);
    if (this.sinceCount.size > TALLIES_MAX) this.sinceCount.clear();
    for (const { deviceId, batch } of batches) {
      const key = `${tenantId}|${deviceId}`;
      const tally = (this.sinceCount.get(key) ?? 0) + batch.records.length;
      if (tally < slack) {
        this.sinceCount.set(key, tally);
        continue;
      }
      this.sinceCount.set(key, 0);
      await this.trim(tenantId, deviceId);
    }
    return { accepted: docs.length - duplicates, duplicates };
  }

  /** Newest first. The caller must already know the device belongs to the tenant. */
  async query(tenantId: string, deviceId: string, query: LogQuery): Promise<StoredLogRecord[]> {
    const docs = await this.logs
      .find({ tenantId, deviceId, ts: { $gte: query.since }, severity: { $gte: SEVERITY[query.level] } })
      .sort({ ts: -1, boot: -1, seq: -1 })
      .limit(query.limit)
      .toArray();
    return docs.map(({ boot, seq, ts, level, tag, msg, fields, receivedAt }) => ({
      boot,
      seq,
      ts,
      level,
      tag,
      msg,
      fields,
      receivedAt,
    }));
  }

  private async insert(docs: LogDoc[]): Promise<number> {
    const writeErrors = await boundedInsertMany(this.logs, docs);
    const other = writeErrors.find((writeError) => writeError.code !== DUPLICATE_KEY);
    if (other) throw new Error(`storing device logs failed: ${other.errmsg ?? other.code}`);
    return writeErrors.length;
  }

  private async trim(tenantId: string, deviceId: string): Promise<void> {
    const count = await this.logs.countDocuments({ tenantId, deviceId });
    // The slack batches the deletes: one trim per tenth of the cap, not one per batch.
    if (count <= this.maxPerDevice + Math.ceil(this.maxPerDevice / 10)) return;
    const oldest = await this.logs
      .find({ tenantId, deviceId }, { projection: { _id: 1 } })
      .sort({ ts: 1, boot: 1, seq: 1 })
      .limit(count - this.maxPerDevice)
      .toArray();
    await this.logs.deleteMany({ _id: { $in: oldest.map((doc) => doc._id) } });
  }
}
