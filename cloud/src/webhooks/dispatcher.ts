// Delivers domain events to partner endpoints. Every replica runs a dispatcher; one at a time
// works, under the `webhook-dispatch` SlotLease, so each attempt is made once. A pass fans the
// event outbox out into deliveries (one per subscribed, active endpoint; the id is derived from
// endpoint and event, so a replayed event is not delivered twice), then each endpoint's queue is
// worked in order: the head delivery is attempted until it succeeds or is dead-lettered, and
// only then the next one, so a receiver sees an endpoint's events in the order they happened.
// Failures are retried with exponential backoff and jitter for the retry window (24 h), then
// dead-lettered; an endpoint failing for longer than `disableAfterMs` is disabled, with an event.

import type { FastifyBaseLogger } from "fastify";
import type { Collection, Db } from "mongodb";
import type { SecretBox } from "../auth/secret-box.ts";
import { EventPublisher, eventBell, type OutboxDoc, publishOrder } from "../events/event-publisher.ts";
import type { DomainEvent } from "../events/event-types.ts";
import type { CloudMetrics } from "../metrics/cloud-metrics.ts";
import { PROCESS_HOLDER, SlotLease } from "../retention/lease.ts";
import {
  AttemptStats,
  type DeliveryAttempt,
  type DeliveryDoc,
  DeliveryStore,
  deliveryId,
  type PendingDoc,
} from "./delivery-store.ts";
import type { WebhookEgress } from "./egress.ts";
import {
  autoDisabled,
  type EndpointDoc,
  type EndpointHealthDoc,
  EndpointStore,
  emptyHealth,
  endpointActive,
} from "./endpoint-store.ts";
import { WebhookPoster } from "./http-post.ts";
import { SIGNATURE_HEADER, signatureHeader } from "./signature.ts";

export interface DispatcherOptions {
  secrets: SecretBox;
  egress: WebhookEgress;
  metrics: CloudMetrics;
  now?: () => number;
  random?: () => number;
  /** How often an idle dispatcher looks for work (a publish on this replica wakes it at once). */
  pollMs?: number;
  timeoutMs?: number;
  /** First retry delay; doubled per failed attempt up to retryMaxMs, each jittered to 50..100 %. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How long a delivery is retried from the moment it was queued before it is dead-lettered. */
  retryWindowMs?: number;
  /** An endpoint whose attempts all failed for this long (and at least disableAfterFailures times) is disabled. */
  disableAfterMs?: number;
  disableAfterFailures?: number;
  /** Finished deliveries are kept this long in the delivery log. */
  logRetentionMs?: number;
  /** Replica identity for the lease (tests run two replicas in one process). */
  holder?: string;
}

const LEASE_SLOT_MS = 30_000;
const FANOUT_BATCH = 100;
const RETENTION_EVERY_MS = 10 * 60_000;
/** Attempts on other endpoints go on while one endpoint's receiver is slow. */
const ENDPOINTS_AT_ONCE = 16;

export const DEFAULTS = {
  pollMs: 250,
  timeoutMs: 10_000,
  retryBaseMs: 10_000,
  retryMaxMs: 3_600_000,
  retryWindowMs: 24 * 3_600_000,
  disableAfterMs: 3 * 24 * 3_600_000,
  disableAfterFailures: 20,
  logRetentionMs: 30 * 24 * 3_600_000,
};

/** Why an attempt failed, in words fit for the delivery log (never the URL: it may hold a token). */
function failureOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message;
  return detail ? `${error.message}: ${detail}` : error.message;
}

function byQueueOrder(a: PendingDoc, b: PendingDoc): number {
  return a.order - b.order || (a._id < b._id ? -1 : a._id > b._id ? 1 : 0);
}

export class WebhookDispatcher {
  private readonly endpoints: EndpointStore;
  private readonly deliveries: DeliveryStore;
  private readonly stats: AttemptStats;
  private readonly outbox: Collection<OutboxDoc>;
  private readonly events: EventPublisher;
  private readonly lease: SlotLease;
  private readonly poster: WebhookPoster;
  private readonly settings: typeof DEFAULTS;
  private readonly now: () => number;
  private readonly random: () => number;
  /** Endpoints being worked on in this process, each by one worker. */
  private readonly workers = new Map<string, Promise<void>>();
  private loop: Promise<void> | undefined;
  private stopped = false;
  private lastRetention = 0;

  constructor(
    private readonly db: Db,
    private readonly log: FastifyBaseLogger,
    private readonly options: DispatcherOptions,
  ) {
    this.endpoints = new EndpointStore(db);
    this.deliveries = new DeliveryStore(db);
    this.stats = new AttemptStats(db);
    this.outbox = db.collection<OutboxDoc>("event_outbox");
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.events = new EventPublisher(db, this.now);
    this.settings = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>) {
      this.settings[key] = options[key] ?? DEFAULTS[key];
    }
    this.lease = new SlotLease(db, "webhook-dispatch", LEASE_SLOT_MS, options.holder ?? PROCESS_HOLDER, this.now);
    this.poster = new WebhookPoster(options.egress, this.settings.timeoutMs);
  }

  start(): void {
    const bell = eventBell(this.db);
    this.loop = (async () => {
      while (!this.stopped) {
        await this.pass().catch((error: unknown) => this.log.error({ err: error }, "webhook dispatch pass failed"));
        await bell.wait(this.settings.pollMs);
      }
    })();
  }

  /** Stops looking for work and waits for the attempts under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    eventBell(this.db).ring();
    await this.loop;
    await Promise.allSettled(this.workers.values());
  }

  /** One pass run to its end, workers included (tests step a clock between passes). */
  async drain(): Promise<void> {
    await this.pass();
    await Promise.allSettled(this.workers.values());
  }

  /** Fans the outbox out, then starts a worker for each endpoint whose queue head is due. */
  private async pass(): Promise<void> {
    if (!(await this.lease.acquire(this.settings.timeoutMs * 2))) return;
    await this.fanOut();
    const now = this.now();
    const due = new Set<string>();
    for (const entry of await this.deliveries.queued()) if (entry.nextAttemptAt <= now) due.add(entry.endpointId);
    for (const endpointId of due) {
      if (this.workers.has(endpointId) || this.workers.size >= ENDPOINTS_AT_ONCE) continue;
      const worker = this.work(endpointId)
        .catch((error: unknown) => this.log.error({ err: error, endpointId }, "webhook delivery failed to record"))
        .finally(() => this.workers.delete(endpointId));
      this.workers.set(endpointId, worker);
    }
    if (now - this.lastRetention >= RETENTION_EVERY_MS) {
      this.lastRetention = now;
      await this.deliveries.expire(now - this.settings.logRetentionMs);
      await this.stats.expire(now - 86_400_000);
    }
  }

  private async fanOut(): Promise<void> {
    const events = await this.outbox.find({}).limit(FANOUT_BATCH).toArray();
    events.sort((a, b) => publishOrder(a) - publishOrder(b) || (a._id < b._id ? -1 : 1));
    const subscribers = new Map<string, EndpointDoc[]>();
    for (const event of events) {
      let endpoints = subscribers.get(event.tenantId);
      if (!endpoints) {
        endpoints = [];
        for (const endpoint of await this.endpoints.list(event.tenantId)) {
          if (endpointActive(endpoint, await this.endpoints.healthOf(endpoint._id))) endpoints.push(endpoint);
        }
        subscribers.set(event.tenantId, endpoints);
      }
      const envelope: DomainEvent = {
        id: event._id,
        type: event.type,
        createdAt: event.createdAt,
        organization: event.tenantId,
        data: event.data,
      };
      const body = JSON.stringify(envelope);
      for (const endpoint of endpoints) {
        if (!endpoint.events.includes(event.type)) continue;
        await this.deliveries.enqueue(
          {
            _id: deliveryId(endpoint._id, event._id),
            tenantId: event.tenantId,
            endpointId: endpoint._id,
            eventId: event._id,
            eventType: event.type,
            body,
            createdAt: this.now(),
            status: "pending",
            attempts: [],
            nextAttemptAt: this.now(),
            succeededAt: null,
            deadAt: null,
            deadReason: null,
          },
          publishOrder(event),
        );
      }
      this.options.metrics.eventsPublished.inc({ type: event.type });
      await this.outbox.deleteOne({ _id: event._id });
    }
  }

  /** Works one endpoint's queue in order while its head is due and this replica holds the lease. */
  private async work(endpointId: string): Promise<void> {
    while (!this.stopped && (await this.lease.acquire(this.settings.timeoutMs * 2))) {
      const [head] = (await this.deliveries.queued())
        .filter((entry) => entry.endpointId === endpointId)
        .sort(byQueueOrder);
      const now = this.now();
      if (!head || head.nextAttemptAt > now) return;
      const delivery = await this.deliveries.get(head._id);
      // Written by a fan-out that stopped half-way; the next fan-out of the same event completes it.
      if (!delivery) return;
      const endpoint = (await this.endpoints.byIds([endpointId])).get(endpointId);
      if (!endpoint) {
        await this.deliveries.kill(head._id, now, "endpoint deleted");
        continue;
      }
      const health = (await this.endpoints.healthOf(endpointId)) ?? emptyHealth(endpoint);
      if (!endpointActive(endpoint, health)) {
        await this.deliveries.kill(head._id, now, "endpoint disabled");
        continue;
      }
      await this.attempt(endpoint, health, delivery, head);
    }
  }

  private async attempt(
    endpoint: EndpointDoc,
    health: EndpointHealthDoc,
    delivery: DeliveryDoc,
    entry: PendingDoc,
  ): Promise<void> {
    const at = this.now();
    const n = (delivery.attempts.at(-1)?.n ?? 0) + 1;
    const record: DeliveryAttempt = { n, at, statusCode: null, latencyMs: 0, snippet: null, error: null };
    try {
      const secret = this.options.secrets.open(endpoint.secret);
      const headers = {
        "content-type": "application/json",
        "user-agent": "Kestrel-Webhooks/1",
        "kestrel-event": delivery.eventType,
        "kestrel-event-id": delivery.eventId,
        "kestrel-delivery": delivery._id,
        "kestrel-attempt": String(n),
        // Signed per attempt: the timestamp is the attempt's, so a receiver's replay window holds.
        [SIGNATURE_HEADER]: await signatureHeader(secret, Math.floor(at / 1000), delivery.body),
      };
      const answer = await this.poster.post(endpoint.url, headers, Buffer.from(delivery.body));
      Object.assign(record, {
        statusCode: answer.status,
        latencyMs: Math.round(answer.latencyMs),
        snippet: answer.snippet,
      });
      if (answer.status < 200 || answer.status > 299) record.error = `answered HTTP ${answer.status}`;
    } catch (error) {
      Object.assign(record, { latencyMs: this.now() - at, error: failureOf(error) });
    }
    const ok = record.error === null;
    const outcome = ok ? "success" : "failure";
    this.options.metrics.webhookDeliveries.inc({ outcome });
    this.options.metrics.webhookDuration.observe({ outcome }, record.latencyMs / 1000);
    await this.stats.count(endpoint.tenantId, at, ok);
    const log = this.log.child({ tenantId: endpoint.tenantId, endpointId: endpoint._id, deliveryId: delivery._id });
    if (ok) {
      await this.deliveries.recordAttempt(delivery, record, { succeeded: true });
      await this.endpoints.saveHealth({ ...health, lastSuccessAt: at, failingSince: null, consecutiveFailures: 0 });
      log.debug({ attempt: n, statusCode: record.statusCode }, "webhook delivered");
      return;
    }
    const failing: EndpointHealthDoc = {
      ...health,
      lastFailureAt: at,
      failingSince: health.failingSince ?? at,
      consecutiveFailures: health.consecutiveFailures + 1,
    };
    if (at - entry.queuedAt >= this.settings.retryWindowMs) {
      await this.deliveries.recordAttempt(delivery, record, { dead: "retries exhausted" });
      this.options.metrics.webhookDeliveries.inc({ outcome: "dead" });
      log.warn({ attempt: n, error: record.error }, "webhook delivery dead-lettered");
    } else {
      const retryAt = at + this.backoff(n);
      await this.deliveries.recordAttempt(delivery, record, { retryAt });
      log.info({ attempt: n, error: record.error, retryAt }, "webhook delivery failed; will retry");
    }
    const sustained =
      at - (failing.failingSince ?? at) >= this.settings.disableAfterMs &&
      failing.consecutiveFailures >= this.settings.disableAfterFailures;
    if (sustained && !autoDisabled(endpoint, failing)) await this.disable(endpoint, failing, at);
    else await this.endpoints.saveHealth(failing);
  }

  /** Full retry delay doubled per failure, capped, then jittered to 50..100 % so retries spread out. */
  private backoff(failures: number): number {
    const full = Math.min(this.settings.retryMaxMs, this.settings.retryBaseMs * 2 ** (failures - 1));
    return Math.round(full * (0.5 + this.random() / 2));
  }

  private async disable(endpoint: EndpointDoc, health: EndpointHealthDoc, at: number): Promise<void> {
    const hours = Math.round((at - (health.failingSince ?? at)) / 3_600_000);
    const reason = `every delivery failed for ${hours} h (${health.consecutiveFailures} attempts)`;
    await this.endpoints.saveHealth({
      ...health,
      disabledAt: at,
      disabledReason: reason,
      disabledGeneration: endpoint.generation ?? 0,
    });
    for (const entry of await this.deliveries.queued()) {
      if (entry.endpointId === endpoint._id) await this.deliveries.kill(entry._id, at, "endpoint disabled");
    }
    await this.events.publish(endpoint.tenantId, "webhook.endpoint_disabled", `${endpoint._id}|${at}`, {
      endpointId: endpoint._id,
      reason,
      at,
    });
    this.log.warn({ tenantId: endpoint.tenantId, endpointId: endpoint._id, reason }, "webhook endpoint disabled");
  }
}
