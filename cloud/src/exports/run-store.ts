// Runs of scheduled exports and their leases. A run's `_id` is `<scheduleId>-<tick ms>` (attempt 1)
// or `<scheduleId>-<tick ms>-<attempt>`, so claiming an attempt is an insert that succeeds for exactly
// one replica (duplicate key for the others), on MongoDB and FerretDB alike; no transactions or
// findAndModify. A running attempt also has a lease document (`export_run_leases`, same `_id`) that
// its replica renews; the collection holds only live or abandoned attempts, so finding expired
// leases stays cheap however many runs are recorded.

import { type Collection, type Db, type Filter, MongoServerError } from "mongodb";
import { Problem } from "../http/problem.ts";
import type { ExportFormat } from "./export-format.ts";
import type { RunStatus } from "./schedule-schema.ts";

const DUPLICATE_KEY = 11000;

export interface RunDoc {
  _id: string;
  tenantId: string;
  scheduleId: string;
  tick: Date;
  from: Date;
  to: Date;
  /** 1 for the tick's first attempt; more after replicas were lost during it. */
  attempt: number;
  /**
   * Whether every gateway of the organization had reported its uplink complete past the tick (plus
   * the allowed lateness) when the run started; false when the maximum wait ran out first.
   */
  dataComplete?: boolean;
  status: RunStatus;
  format: ExportFormat;
  destination: "webhook" | "download";
  startedAt: Date;
  finishedAt?: Date;
  rows?: number;
  bytes?: number;
  /** Stored file chunks (download destination), until the file expires. */
  chunks?: number;
  /** When the stored file expires (download destination). */
  expiresAt?: Date;
  /** When the expired file was deleted. */
  fileDeletedAt?: Date;
  error?: string;
}

export type RunOutcome =
  | { status: "succeeded"; rows: number; bytes: number; chunks?: number; expiresAt?: Date }
  | { status: "failed"; error: string };

/** A running attempt's claim on its tick; gone once the attempt is recorded. */
export interface RunLease {
  _id: string;
  scheduleId: string;
  tick: Date;
  attempt: number;
  leaseUntil: Date;
}

/** What a run lost with its replica records as its error. */
export const REPLICA_LOST = "replica_lost";

/** Where the page before ended: the last run's tick and id. */
interface RunCursor {
  tick: number;
  runId: string;
}

export function runId(scheduleId: string, tick: number, attempt = 1): string {
  return attempt === 1 ? `${scheduleId}-${tick}` : `${scheduleId}-${tick}-${attempt}`;
}

function encodeCursor(last: RunDoc): string {
  return Buffer.from(JSON.stringify([last.tick.getTime(), last._id])).toString("base64url");
}

function decodeCursor(text: string): RunCursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || typeof parsed[0] !== "number" || typeof parsed[1] !== "string") {
    throw new Problem(400, "invalid_cursor", "cursor is not one this listing returned");
  }
  return { tick: parsed[0], runId: parsed[1] };
}

function isDuplicate(error: unknown): boolean {
  return error instanceof MongoServerError && error.code === DUPLICATE_KEY;
}

export class ExportRunStore {
  private readonly runs: Collection<RunDoc>;
  private readonly leases: Collection<RunLease>;

  constructor(db: Db) {
    this.runs = db.collection<RunDoc>("export_runs");
    this.leases = db.collection<RunLease>("export_run_leases");
  }

  static async createIndexes(db: Db): Promise<void> {
    const runs = db.collection<RunDoc>("export_runs");
    await runs.createIndex({ tenantId: 1, tick: -1, _id: -1 });
    await runs.createIndex({ tenantId: 1, scheduleId: 1, tick: -1, _id: -1 });
    await runs.createIndex({ expiresAt: 1 });
  }

  /**
   * Records this attempt as started, leased until `leaseUntil`; null when another scheduler claimed it
   * first. The lease goes in first: a replica that dies between the two inserts leaves a lease that
   * expires and is recovered, never a `running` run without one.
   */
  async claim(run: Omit<RunDoc, "status" | "startedAt">, startedAt: Date, leaseUntil: Date): Promise<RunDoc | null> {
    const lease: RunLease = {
      _id: run._id,
      scheduleId: run.scheduleId,
      tick: run.tick,
      attempt: run.attempt,
      leaseUntil,
    };
    try {
      await this.leases.insertOne(lease);
    } catch (error) {
      if (isDuplicate(error)) return null;
      throw error;
    }
    const doc: RunDoc = { ...run, status: "running", startedAt };
    try {
      await this.runs.insertOne(doc);
      return doc;
    } catch (error) {
      // Other errors leave the lease to expire, whether the insert happened or not: recovery sorts it out.
      if (!isDuplicate(error)) throw error;
      // Run and recorded before (its lease already released): a late claim, not a new attempt.
      await this.release(run._id);
      return null;
    }
  }

  /**
   * Extends the lease of a running attempt; false once the attempt was superseded (its lease taken
   * away, or the next attempt claimed), when its replica must stop.
   */
  async renew(run: RunDoc, leaseUntil: Date): Promise<boolean> {
    const renewed = await this.leases.updateOne({ _id: run._id }, { $set: { leaseUntil } });
    if (renewed.matchedCount !== 1) return false;
    const next = runId(run.scheduleId, run.tick.getTime(), run.attempt + 1);
    return (await this.runs.findOne({ _id: next }, { projection: { _id: 1 } })) === null;
  }

  /** Leases not renewed since before `now`: their replica is gone, or was cut off that long. */
  expiredLeases(now: Date): Promise<RunLease[]> {
    return this.leases
      .find({ leaseUntil: { $lt: now } })
      .limit(100)
      .toArray();
  }

  find(id: string): Promise<RunDoc | null> {
    return this.runs.findOne({ _id: id });
  }

  async finish(id: string, outcome: RunOutcome, finishedAt: Date): Promise<void> {
    await this.runs.updateOne({ _id: id }, { $set: { ...outcome, finishedAt } });
    await this.release(id);
  }

  /** Records an attempt whose replica was lost as failed (if it is still `running`) and drops its lease. */
  async abandon(id: string, finishedAt: Date): Promise<void> {
    await this.runs.updateOne(
      { _id: id, status: "running" },
      { $set: { status: "failed", error: REPLICA_LOST, finishedAt } },
    );
    await this.release(id);
  }

  async release(id: string): Promise<void> {
    await this.leases.deleteOne({ _id: id });
  }

  /** Download runs whose file expired at or before `now` and is still stored. */
  expiredFiles(now: Date, limit: number): Promise<RunDoc[]> {
    return this.runs
      .find({ expiresAt: { $lte: now }, chunks: { $exists: true } })
      .limit(limit)
      .toArray();
  }

  async fileDeleted(id: string, at: Date): Promise<void> {
    await this.runs.updateOne({ _id: id }, { $set: { fileDeletedAt: at }, $unset: { chunks: "" } });
  }

  async ofTenant(tenantId: string, id: string): Promise<RunDoc | null> {
    const doc = await this.runs.findOne({ _id: id });
    return doc?.tenantId === tenantId ? doc : null;
  }

  /** One page, latest tick first, and the cursor of the next page (null on the last). */
  async list(
    tenantId: string,
    options: { scheduleId?: string; limit: number; cursor?: string },
  ): Promise<{ runs: RunDoc[]; cursor: string | null }> {
    const filter: Filter<RunDoc> = { tenantId };
    if (options.scheduleId !== undefined) filter.scheduleId = options.scheduleId;
    if (options.cursor !== undefined) {
      const after = decodeCursor(options.cursor);
      const tick = new Date(after.tick);
      filter.$or = [{ tick: { $lt: tick } }, { tick, _id: { $lt: after.runId } }];
    }
    const docs = await this.runs
      .find(filter)
      .sort({ tick: -1, _id: -1 })
      .limit(options.limit + 1)
      .toArray();
    const runs = docs.slice(0, options.limit);
    const last = runs.at(-1);
    return { runs, cursor: docs.length > options.limit && last ? encodeCursor(last) : null };
  }
}
