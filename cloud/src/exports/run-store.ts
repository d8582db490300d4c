// Runs of scheduled exports. A run's `_id` is `<scheduleId>-<tick ms>`, so claiming a tick is one
// insert that succeeds for exactly one replica (duplicate key for the others), on MongoDB and
// FerretDB alike; no transactions or findAndModify needed.

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
  status: RunStatus;
  format: ExportFormat;
  destination: "webhook" | "download";
  startedAt: Date;
  finishedAt?: Date;
  rows?: number;
  bytes?: number;
  /** Stored file chunks (download destination). */
  chunks?: number;
  error?: string;
}

export type RunOutcome =
  | { status: "succeeded"; rows: number; bytes: number; chunks?: number }
  | { status: "failed"; error: string };

/** Where the page before ended: the last run's tick and id. */
interface RunCursor {
  tick: number;
  runId: string;
}

export function runId(scheduleId: string, tick: number): string {
  return `${scheduleId}-${tick}`;
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

export class ExportRunStore {
  private readonly runs: Collection<RunDoc>;

  constructor(db: Db) {
    this.runs = db.collection<RunDoc>("export_runs");
  }

  static async createIndexes(db: Db): Promise<void> {
    const runs = db.collection<RunDoc>("export_runs");
    await runs.createIndex({ tenantId: 1, tick: -1, _id: -1 });
    await runs.createIndex({ tenantId: 1, scheduleId: 1, tick: -1, _id: -1 });
  }

  /** Records the run of this tick as started; null when another scheduler claimed the tick first. */
  async claim(run: Omit<RunDoc, "status" | "startedAt">, startedAt: Date): Promise<RunDoc | null> {
    const doc: RunDoc = { ...run, status: "running", startedAt };
    try {
      await this.runs.insertOne(doc);
      return doc;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return null;
      throw error;
    }
  }

  async finish(id: string, outcome: RunOutcome, finishedAt: Date): Promise<void> {
    await this.runs.updateOne({ _id: id }, { $set: { ...outcome, finishedAt } });
  }

  async find(tenantId: string, id: string): Promise<RunDoc | null> {
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
