// Webhook deliveries: one per (endpoint, event), with every attempt (status code, latency, the
// start of the answer), kept as the endpoint's delivery log; and the queue of deliveries still to
// make, `webhook_pending`, a separate small collection so the dispatcher reads only what is due
// (FerretDB answers any filter but `_id` by scanning). Both are written by the dispatcher under its
// lease; the API only reads, and queues redeliveries.

import { createHash } from "node:crypto";
import type { Collection, Db, Filter } from "mongodb";
import type { EventType } from "../events/event-types.ts";
import { pointReads } from "../storage/point-reads.ts";

export type DeliveryStatus = "pending" | "succeeded" | "dead";

export interface DeliveryAttempt {
  /** 1, 2, … across redeliveries. */
  n: number;
  at: number;
  /** The receiver's HTTP status; null when no answer came. */
  statusCode: number | null;
  latencyMs: number;
  /** The start of the receiver's answer, or why there was none. */
  snippet: string | null;
  error: string | null;
}

export interface DeliveryDoc {
  _id: string;
  tenantId: string;
  endpointId: string;
  eventId: string;
  eventType: EventType;
  /** The exact JSON body sent (the signature covers it). */
  body: string;
  createdAt: number;
  status: DeliveryStatus;
  attempts: DeliveryAttempt[];
  nextAttemptAt: number | null;
  succeededAt: number | null;
  deadAt: number | null;
  deadReason: string | null;
}

export interface PendingDoc {
  _id: string;
  tenantId: string;
  endpointId: string;
  /** Position in the endpoint's queue, in µs: the event's publish order, or the moment of a manual redelivery. */
  order: number;
  /** Start of the retry window. */
  queuedAt: number;
  nextAttemptAt: number;
}

/** Attempts kept per delivery (the earliest and the latest ones). */
export const ATTEMPTS_KEPT = 50;

export function deliveryId(endpointId: string, eventId: string): string {
  return `dlv_${createHash("sha256").update(`${endpointId}|${eventId}`).digest("base64url").slice(0, 24)}`;
}

export class DeliveryStore {
  private readonly deliveries: Collection<DeliveryDoc>;
  private readonly pending: Collection<PendingDoc>;

  constructor(db: Db) {
    this.deliveries = db.collection<DeliveryDoc>("webhook_deliveries");
    this.pending = db.collection<PendingDoc>("webhook_pending");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db
      .collection<DeliveryDoc>("webhook_deliveries")
      .createIndex({ tenantId: 1, endpointId: 1, createdAt: -1, _id: -1 });
    await db.collection<DeliveryDoc>("webhook_deliveries").createIndex({ createdAt: 1 });
  }

  get(id: string): Promise<DeliveryDoc | null> {
    return this.deliveries.findOne({ _id: id });
  }

  async find(tenantId: string, endpointId: string, id: string): Promise<DeliveryDoc | null> {
    const doc = await this.get(id);
    return doc?.tenantId === tenantId && doc.endpointId === endpointId ? doc : null;
  }

  /**
   * Queues the delivery unless it exists: the queue entry first, so a crash in between leaves an
   * entry whose delivery the next fan-out of the same event writes. Only the lease holder calls it.
   */
  async enqueue(delivery: DeliveryDoc, order: number): Promise<boolean> {
    if (await this.deliveries.findOne({ _id: delivery._id }, { projection: { _id: 1 } })) return false;
    await this.pending.replaceOne(
      { _id: delivery._id },
      {
        tenantId: delivery.tenantId,
        endpointId: delivery.endpointId,
        order,
        queuedAt: delivery.createdAt,
        nextAttemptAt: delivery.createdAt,
      },
      { upsert: true },
    );
    await this.deliveries.replaceOne({ _id: delivery._id }, delivery, { upsert: true });
    return true;
  }

  /** Everything queued (a small collection: only deliveries not yet made). */
  queued(): Promise<PendingDoc[]> {
    return this.pending.find({}).toArray();
  }

  /** Records an attempt; `next` is the time of the next one, or the delivery's end. */
  async recordAttempt(
    delivery: DeliveryDoc,
    attempt: DeliveryAttempt,
    next: { retryAt: number } | { succeeded: true } | { dead: string },
  ): Promise<void> {
    const attempts = [...delivery.attempts, attempt];
    // A delivery retried for a day has ~30 attempts; the oldest beyond the cap are dropped, the first kept.
    if (attempts.length > ATTEMPTS_KEPT) attempts.splice(1, attempts.length - ATTEMPTS_KEPT);
    const set: Partial<DeliveryDoc> = { attempts };
    if ("retryAt" in next) {
      Object.assign(set, { status: "pending", nextAttemptAt: next.retryAt });
      await this.pending.updateOne({ _id: delivery._id }, { $set: { nextAttemptAt: next.retryAt } });
    } else if ("succeeded" in next) {
      Object.assign(set, { status: "succeeded", nextAttemptAt: null, succeededAt: attempt.at });
    } else {
      Object.assign(set, { status: "dead", nextAttemptAt: null, deadAt: attempt.at, deadReason: next.dead });
    }
    await this.deliveries.updateOne({ _id: delivery._id }, { $set: set });
    if (!("retryAt" in next)) await this.pending.deleteOne({ _id: delivery._id });
  }

  /** Dead-letters a queued delivery without an attempt (its endpoint was disabled or deleted). */
  async kill(id: string, at: number, reason: string): Promise<void> {
    await this.deliveries.updateOne(
      { _id: id, status: "pending" },
      { $set: { status: "dead", nextAttemptAt: null, deadAt: at, deadReason: reason } },
    );
    await this.pending.deleteOne({ _id: id });
  }

  /** Queues a finished delivery again, at the end of its endpoint's queue; false when it is still queued. */
  async redeliver(delivery: DeliveryDoc, now: number): Promise<boolean> {
    if (delivery.status === "pending") return false;
    await this.pending.replaceOne(
      { _id: delivery._id },
      {
        tenantId: delivery.tenantId,
        endpointId: delivery.endpointId,
        order: now * 1000,
        queuedAt: now,
        nextAttemptAt: now,
      },
      { upsert: true },
    );
    await this.deliveries.updateOne(
      { _id: delivery._id },
      { $set: { status: "pending", nextAttemptAt: now, deadAt: null, deadReason: null, succeededAt: null } },
    );
    return true;
  }

  /** One page of an endpoint's delivery log, newest first; `before` is the last item of the page before. */
  list(
    tenantId: string,
    endpointId: string,
    options: { limit: number; status?: DeliveryStatus; before?: { createdAt: number; id: string } },
  ): Promise<DeliveryDoc[]> {
    const filter: Filter<DeliveryDoc> = { tenantId, endpointId };
    if (options.status) filter.status = options.status;
    if (options.before) {
      const { createdAt, id } = options.before;
      filter.$or = [{ createdAt: { $lt: createdAt } }, { createdAt, _id: { $lt: id } }];
    }
    return this.deliveries
      .find(filter, { projection: { body: 0 } })
      .sort({ createdAt: -1, _id: -1 })
      .limit(options.limit + 1)
      .toArray();
  }

  /** Deletes finished deliveries created before `before` (the log's retention). */
  async expire(before: number): Promise<number> {
    const result = await this.deliveries.deleteMany({ status: { $ne: "pending" }, createdAt: { $lt: before } });
    return result.deletedCount;
  }
}

interface AttemptStatsDoc {
  _id: string;
  tenantId: string;
  minute: number;
  ok: number;
  failed: number;
}

const MINUTE_MS = 60_000;

/**
 * Delivery attempts per organization per minute, for the webhook failure-rate alert rule (which
 * another replica may evaluate). Written by the dispatcher alone, so its increments do not race.
 */
export class AttemptStats {
  private readonly stats: Collection<AttemptStatsDoc>;

  constructor(db: Db) {
    this.stats = db.collection<AttemptStatsDoc>("webhook_attempt_stats");
  }

  async count(tenantId: string, at: number, ok: boolean): Promise<void> {
    const minute = at - (at % MINUTE_MS);
    await this.stats.updateOne(
      { _id: `${tenantId}|${minute}` },
      { $inc: ok ? { ok: 1, failed: 0 } : { ok: 0, failed: 1 }, $setOnInsert: { tenantId, minute } },
      { upsert: true },
    );
  }

  /** Failed attempts / all attempts over the whole minutes in [now - windowMs, now]; null without attempts. */
  async failureRate(tenantId: string, now: number, windowMs: number): Promise<number | null> {
    const ids: string[] = [];
    for (let minute = now - (now % MINUTE_MS); minute > now - windowMs - MINUTE_MS; minute -= MINUTE_MS) {
      ids.push(`${tenantId}|${minute}`);
    }
    // A minute a read: a long window is many, a few at a time.
    const docs = await pointReads(this.stats, ids);
    let ok = 0;
    let failed = 0;
    for (const doc of docs) {
      ok += doc.ok;
      failed += doc.failed;
    }
    return ok + failed === 0 ? null : failed / (ok + failed);
  }

  /** Deletes minutes before `before`. */
  async expire(before: number): Promise<void> {
    await this.stats.deleteMany({ minute: { $lt: before } });
  }
}
