// Sends what devices published to the cloud in batches: items are first made
// durable in the on-disk queue (the broker acknowledges a publish only after
// that), then delivered in requests, several in flight at once, each taking
// the next records of the queue. They are removed from the queue in order,
// only once every request before theirs was answered 200 too. A failure stops
// new requests until those in flight settle; then everything not removed is
// sent again after exponential backoff with jitter. The cloud deduplicates on
// (device, boot, seq), so a retry, or a resend after a crash, never stores a
// sample twice.

import type { DeviceState, LogBatch, TelemetryBatch } from "@kestrel/wire";
import type { Logger } from "pino";
import { writeBytes, writeString } from "../bytes.ts";
import type { GatewayMetrics } from "../metrics.ts";
import { type CloudClient, CloudError } from "./cloud-client.ts";
import type { DiskQueue, QueuedRecord } from "./disk-queue.ts";

type ItemKind = "telemetry" | "state" | "log";

/**
 * One queued item as stored on disk, as text: a kind digit (KIND_CODES), when the gateway accepted it
 * (epoch ms), a space, and the item's JSON exactly as it goes in an ingest request's array for that
 * kind, so that a request is the records' bytes put together, nothing parsed or serialised again.
 * Records of earlier versions are one JSON object ({ kind, deviceId, at, batch | state }), read too.
 */
interface QueuedItem {
  kind: ItemKind;
  at: number;
  json: Buffer;
}

const KIND_CODES: Record<ItemKind, number> = { telemetry: 1, state: 2, log: 3 };
const KINDS = new Map(Object.entries(KIND_CODES).map(([kind, code]) => [0x30 + code, kind as ItemKind]));
const SPACE = 0x20;
const LEGACY_RECORD = 0x7b; // "{"

function encode(kind: ItemKind, at: number, item: object): string {
  return `${KIND_CODES[kind]}${at} ${JSON.stringify(item)}`;
}

const BATCH_CLOSE = 0x7d; // "}"

/**
 * A telemetry record whose batch is the device's own JSON bytes, as encode would write it but for
 * key order and spacing: `1<at> {"deviceId":"<id>","batch":<bytes>}`. A device id needs no escaping
 * (isDeviceId: letters, digits, _ and -).
 */
function encodeTelemetryJson(deviceId: string, at: number, batchJson: Buffer): Buffer {
  const head = `${KIND_CODES.telemetry}${at} {"deviceId":"${deviceId}","batch":`;
  const record = Buffer.allocUnsafe(head.length + batchJson.length + 1);
  const end = writeBytes(record, writeString(record, 0, head, head.length), batchJson);
  record[end] = BATCH_CLOSE;
  return record;
}

function decode(payload: Buffer): QueuedItem | undefined {
  const kind = KINDS.get(payload[0] ?? 0);
  // The space ends the time, a dozen bytes in: a loop, not indexOf's checks of its arguments.
  let space = 1;
  while (space < payload.length && payload[space] !== SPACE) space++;
  if (kind && space > 1 && space < payload.length) {
    return { kind, at: Number(payload.toString("latin1", 1, space)), json: payload.subarray(space + 1) };
  }
  if (payload[0] !== LEGACY_RECORD) return undefined;
  try {
    const { kind, at, deviceId, batch, state } = JSON.parse(payload.toString("utf8"));
    const item =
      kind === "telemetry"
        ? { deviceId, batch }
        : kind === "state"
          ? { deviceId, receivedAt: at, state }
          : kind === "log"
            ? { deviceId, receivedAt: at, batch }
            : undefined;
    return item && { kind, at, json: Buffer.from(JSON.stringify(item)) };
  } catch {
    return undefined;
  }
}

const BODY = {
  open: Buffer.from('{"telemetry":['),
  states: Buffer.from('],"states":['),
  logs: Buffer.from('],"logs":['),
  close: Buffer.from("]}"),
  comma: Buffer.from(","),
};

/** An ingest request's JSON from the items' own; `logs` only when there are some, as before logs existed. */
function ingestBody(items: Record<ItemKind, Buffer[]>): Buffer {
  const parts: Buffer[] = [BODY.open];
  const list = (jsons: Buffer[]) => {
    for (const [i, json] of jsons.entries()) {
      if (i > 0) parts.push(BODY.comma);
      parts.push(json);
    }
  };
  list(items.telemetry);
  parts.push(BODY.states);
  list(items.state);
  if (items.log.length > 0) {
    parts.push(BODY.logs);
    list(items.log);
  }
  parts.push(BODY.close);
  return Buffer.concat(parts);
}

export interface ForwarderOptions {
  cloud: Pick<CloudClient, "ingest">;
  queue: DiskQueue;
  logger: Logger;
  metrics: GatewayMetrics;
  intervalMs: number;
  maxBatches: number;
  /** Requests in flight at once (1 = one at a time). */
  concurrency?: number;
}

/** One request: `count` records of the queue, right after those of the requests before it. */
interface Window {
  count: number;
  /** Answered 200 (or refused for good): its records may go once those before them have. */
  done: boolean;
  /** Not delivered: it and every request after it are sent again once all have settled. */
  failed: boolean;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;

export class UplinkForwarder {
  private readonly queue: DiskQueue;
  private timer: NodeJS.Timeout | undefined;
  /** Requests not yet removed from the queue, oldest first; their records are the queue's head. */
  private readonly windows: Window[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly concurrency: number;
  private failures = 0;
  private stopped = true;
  /** The promise of the last append: a new one means a new group. */
  private lastDurable: Promise<void> | undefined;

  constructor(private readonly options: ForwarderOptions) {
    this.queue = options.queue;
    this.concurrency = options.concurrency ?? 1;
  }

  get depth(): number {
    return this.queue.length;
  }

  /** Age in ms of the oldest item not yet delivered, 0 when the queue is empty. */
  async oldestAgeMs(now = Date.now()): Promise<number> {
    const oldest = (await this.queue.peek(1))[0];
    const item = oldest && decode(oldest.payload);
    return item ? Math.max(0, now - item.at) : 0;
  }

  /**
   * Resolves once the batch is durable; rejects (QueueFullError) when the queue is full. `json`, when
   * given, is the batch as the device sent it, known to hold nothing but what `batch` holds: it is
   * stored as it is instead of serialising `batch` again.
   */
  enqueueTelemetry(deviceId: string, batch: TelemetryBatch, at = Date.now(), json?: Buffer): Promise<void> {
    return this.push(json ? encodeTelemetryJson(deviceId, at, json) : encode("telemetry", at, { deviceId, batch }));
  }

  /** Resolves once the state is durable; rejects (QueueFullError) when the queue is full. */
  enqueueState(deviceId: string, state: DeviceState, at = Date.now()): Promise<void> {
    return this.push(encode("state", at, { deviceId, receivedAt: at, state }));
  }

  /** Resolves once the device's log batch is durable; rejects (QueueFullError) when the queue is full. */
  enqueueLogs(deviceId: string, batch: LogBatch, at = Date.now()): Promise<void> {
    return this.push(encode("log", at, { deviceId, receivedAt: at, batch }));
  }

  start(): void {
    this.stopped = false;
    this.schedule(this.options.intervalMs);
  }

  /** Stops the loop after trying, until the deadline, to deliver what is queued; what is left stays on disk. */
  async stop(deadlineMs = 5_000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const deadline = Date.now() + deadlineMs;
    while (Date.now() < deadline) {
      await this.settled();
      if (this.queue.length === 0) break;
      const before = this.queue.length;
      await this.flush();
      if (this.queue.length >= before) break;
    }
    if (this.queue.length > 0) {
      this.options.logger.warn({ queued: this.queue.length }, "gateway stopping with undelivered items kept on disk");
    }
    await this.queue.close();
  }

  /** Sends what is queued and not yet sent, as far as the window allows, and waits for every request in flight. */
  flush(): Promise<void> {
    this.send(true);
    return this.settled();
  }

  private async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  private push(record: Buffer | string): Promise<void> {
    const durable = this.queue.append(record);
    // A full request's worth waiting goes at once rather than at the next tick: checked once a group
    // is on disk (the appends of one group share its promise).
    if (durable !== this.lastDurable) {
      this.lastDurable = durable;
      durable.then(this.afterCommit, () => undefined);
    }
    return durable;
  }

  private readonly afterCommit = (): void => {
    if (!this.stopped && this.failures === 0) this.send(false);
  };

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      // After a failure, one request probes the cloud before the window opens again.
      if (!this.send(true, this.failures > 0 ? 1 : this.concurrency) && this.inFlight.size === 0) {
        this.schedule(this.options.intervalMs);
      }
    }, delayMs);
    this.timer.unref();
  }

  private nextDelay(): number {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures, 16));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  /** Records already in a request. */
  private get taken(): number {
    let taken = 0;
    for (const window of this.windows) taken += window.count;
    return taken;
  }

  /**
   * Starts requests for records not yet sent while fewer than `limit` are in flight: full ones
   * only, or also a last partial one when `partial`. Answers whether it started any.
   */
  private send(partial: boolean, limit = this.concurrency): boolean {
    let started = false;
    while (this.windows.length < limit) {
      const taken = this.taken;
      const unsent = this.queue.length - taken;
      if (unsent <= 0 || (!partial && unsent < this.options.maxBatches)) break;
      const window: Window = { count: Math.min(unsent, this.options.maxBatches), done: false, failed: false };
      this.windows.push(window);
      // peek picks its records now, synchronously: the `count` after those of the requests before.
      const delivery: Promise<void> = this.deliver(window, this.queue.peek(window.count, taken))
        .catch((error: unknown) => {
          // Reading the queue back failed: nothing was sent, so it is a failure like any other.
          window.failed = true;
          this.failures++;
          this.options.logger.error({ err: error }, "reading the queue for delivery failed, will retry");
        })
        .finally(() => {
          this.inFlight.delete(delivery);
          this.afterDelivery();
        });
      this.inFlight.add(delivery);
      started = true;
    }
    return started;
  }

  /** What follows a settled request: the next full ones, a retry after backoff, or the next tick. */
  private afterDelivery(): void {
    const failed = this.windows.some((window) => window.failed);
    if (this.inFlight.size === 0) {
      // Everything settled: what was not removed (a failed request, and any answered after it) is sent again.
      this.windows.length = 0;
    }
    if (this.stopped) return;
    if (failed || this.failures > 0) {
      if (this.inFlight.size === 0) this.schedule(this.nextDelay());
      return;
    }
    this.send(false);
    if (this.inFlight.size === 0 && !this.timer) this.schedule(this.options.intervalMs);
  }

  /** Removes from the queue, in order, the records of the requests at its head that are done. */
  private async release(): Promise<void> {
    for (let window = this.windows[0]; window?.done; window = this.windows[0]) {
      this.windows.shift();
      // ack forgets the records at once (before it waits), so the next window's records are then the head.
      await this.queue.ack(window.count);
    }
  }

  private async deliver(window: Window, peeked: Promise<QueuedRecord[]>): Promise<void> {
    const records = await peeked;
    const items: Record<ItemKind, Buffer[]> = { telemetry: [], state: [], log: [] };
    const { logger, metrics } = this.options;
    for (const record of records) {
      const item = decode(record.payload);
      if (item) items[item.kind].push(item.json);
      else {
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "unreadable_queue_record" });
        logger.error("skipped a queue record that does not decode");
      }
    }
    const sent = performance.now();
    const took = () => (performance.now() - sent) / 1000;
    try {
      const result = await this.options.cloud.ingest(ingestBody(items));
      metrics.forwardDuration.observe({ outcome: "ok" }, took());
      window.done = true;
      if (!this.windows.some((other) => other.failed)) this.failures = 0;
      await this.release();
      metrics.inc("kestrel_gateway_forwarded_items_total", {}, records.length);
      metrics.inc("kestrel_gateway_messages_out_total", { kind: "telemetry" }, items.telemetry.length);
      metrics.inc("kestrel_gateway_messages_out_total", { kind: "state" }, items.state.length);
      metrics.inc("kestrel_gateway_messages_out_total", { kind: "log" }, items.log.length);
      for (const rejection of result.rejected) {
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: `cloud_${rejection.code}` });
        logger.warn(
          { deviceId: rejection.deviceId, code: rejection.code },
          `cloud rejected an item: ${rejection.message}`,
        );
      }
      logger.debug({ items: records.length, accepted: result.accepted }, "forwarded");
    } catch (error) {
      metrics.inc("kestrel_gateway_forward_failures_total");
      const dropped = error instanceof CloudError && !error.retryable;
      metrics.forwardDuration.observe({ outcome: dropped ? "dropped" : "retry" }, took());
      if (dropped) {
        // The cloud will refuse the same request again: log what is dropped, keep the pipe moving.
        window.done = true;
        await this.release();
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: `cloud_${error.code}` }, records.length);
        logger.error({ code: error.code, dropped: records.length }, error.message);
      } else {
        window.failed = true;
        this.failures++;
        const message = error instanceof Error ? error.message : String(error);
        logger.warn(
          { attempt: this.failures, queued: this.queue.length },
          `cloud delivery failed, will retry: ${message}`,
        );
      }
    }
  }
}
