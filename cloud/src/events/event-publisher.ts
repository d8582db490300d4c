// The domain-event publisher other capabilities call (alerts, devices, commands, exports, webhooks).
// An event is one insert into the outbox, `event_outbox`, whose id is derived from what happened
// (the caller's key), so a retried or replayed publish of the same occurrence is the same event and
// is stored once: exactly one event per state change, whichever replica sees it. The webhook
// dispatcher fans the outbox out to subscribed endpoints; a bell wakes it at once on this replica.

import { createHash } from "node:crypto";
import type { Collection, Db } from "mongodb";
import type { EventType } from "./event-types.ts";

const DUPLICATE_KEY = 11000;

export interface OutboxDoc {
  _id: string;
  tenantId: string;
  type: EventType;
  createdAt: number;
  /**
   * Publish order: createdAt in microseconds plus a count of the events this process published
   * within the same millisecond, so those keep the order they happened in (absent on old events).
   */
  order?: number;
  data: Record<string, unknown>;
}

/** The queue position of an event, in OutboxDoc.order's unit. */
export function publishOrder(event: Pick<OutboxDoc, "createdAt" | "order">): number {
  return event.order ?? event.createdAt * 1000;
}

// The last order this process gave, so that each next one is larger even within a millisecond.
let lastOrder = 0;

/** Wakes this process's webhook dispatcher when something is published here. */
export class EventBell {
  private readonly waiters = new Set<() => void>();

  ring(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /** Resolves on a ring or after ms. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
}

// One bell per database in this process, shared by every publisher and the dispatcher.
const bells = new WeakMap<Db, EventBell>();

export function eventBell(db: Db): EventBell {
  const bell = bells.get(db) ?? new EventBell();
  bells.set(db, bell);
  return bell;
}

/** The event id of an occurrence: the same tenant, type and key always give the same id. */
export function eventId(tenantId: string, type: EventType, key: string): string {
  return `evt_${createHash("sha256").update(`${tenantId}|${type}|${key}`).digest("base64url").slice(0, 24)}`;
}

export class EventPublisher {
  private readonly outbox: Collection<OutboxDoc>;
  private readonly bell: EventBell;

  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.outbox = db.collection<OutboxDoc>("event_outbox");
    this.bell = eventBell(db);
  }

  /**
   * Publishes an event once per (tenant, type, key): `key` names the occurrence (an alert's id and
   * transition, a command id). Answers the event id, and whether this call published it.
   */
  async publish(
    tenantId: string,
    type: EventType,
    key: string,
    data: Record<string, unknown>,
  ): Promise<{ id: string; published: boolean }> {
    const id = eventId(tenantId, type, key);
    try {
      const createdAt = this.now();
      lastOrder = Math.max(createdAt * 1000, lastOrder + 1);
      await this.outbox.insertOne({ _id: id, tenantId, type, createdAt, order: lastOrder, data });
    } catch (error) {
      if ((error as { code?: number }).code !== DUPLICATE_KEY) throw error;
      return { id, published: false };
    }
    this.bell.ring();
    return { id, published: true };
  }
}
