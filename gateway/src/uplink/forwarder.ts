// Sends what devices published to the cloud in batches: items are first made
// durable in the on-disk queue (the broker acknowledges a publish only after
// that), then delivered one request at a time, retried with exponential
// backoff and jitter while the cloud is unreachable, and removed from the
// queue only after the cloud's 200. The cloud deduplicates on (device, boot,
// seq), so a retry, or a resend after a crash, never stores a sample twice.

import type { DeviceState, IngestRequest, LogBatch, TelemetryBatch } from "@kestrel/wire";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import { type CloudClient, CloudError } from "./cloud-client.ts";
import type { DiskQueue } from "./disk-queue.ts";

/** One queued item as stored on disk; `at` is when the gateway accepted it (epoch ms). */
type QueuedItem =
  | { kind: "telemetry"; deviceId: string; at: number; batch: TelemetryBatch }
  | { kind: "state"; deviceId: string; at: number; state: DeviceState }
  | { kind: "log"; deviceId: string; at: number; batch: LogBatch };

export interface ForwarderOptions {
  cloud: Pick<CloudClient, "ingest">;
  queue: DiskQueue;
  logger: Logger;
  metrics: GatewayMetrics;
  intervalMs: number;
  maxBatches: number;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;

function decode(payload: Buffer): QueuedItem | undefined {
  try {
    const item = JSON.parse(payload.toString("utf8")) as QueuedItem;
    return item.kind === "telemetry" || item.kind === "state" || item.kind === "log" ? item : undefined;
  } catch {
    return undefined;
  }
}

export class UplinkForwarder {
  private readonly queue: DiskQueue;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private failures = 0;
  private stopped = true;

  constructor(private readonly options: ForwarderOptions) {
    this.queue = options.queue;
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

  /** Resolves once the batch is durable; rejects (QueueFullError) when the queue is full. */
  enqueueTelemetry(deviceId: string, batch: TelemetryBatch, at = Date.now()): Promise<void> {
    return this.push({ kind: "telemetry", deviceId, at, batch });
  }

  /** Resolves once the state is durable; rejects (QueueFullError) when the queue is full. */
  enqueueState(deviceId: string, state: DeviceState, at = Date.now()): Promise<void> {
    return this.push({ kind: "state", deviceId, at, state });
  }

  /** Resolves once the device's log batch is durable; rejects (QueueFullError) when the queue is full. */
  enqueueLogs(deviceId: string, batch: LogBatch, at = Date.now()): Promise<void> {
    return this.push({ kind: "log", deviceId, at, batch });
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
      if (this.inFlight) await this.inFlight;
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

  /** Delivers one request's worth of the queue. Exposed for tests and shutdown. */
  flush(): Promise<void> {
    if (!this.inFlight) {
      this.inFlight = this.deliver().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }

  private async push(item: QueuedItem): Promise<void> {
    await this.queue.append(Buffer.from(JSON.stringify(item)));
    this.options.metrics.set("kestrel_gateway_queue_depth", this.queue.length);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.flush().then(
        () => this.schedule(this.nextDelay()),
        () => this.schedule(this.nextDelay()),
      );
    }, delayMs);
    this.timer.unref();
  }

  private nextDelay(): number {
    if (this.failures === 0) return this.options.intervalMs;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures, 16));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  private async deliver(): Promise<void> {
    if (this.queue.length === 0) return;
    const records = await this.queue.peek(this.options.maxBatches);
    const request: IngestRequest = { telemetry: [], states: [] };
    const logs: NonNullable<IngestRequest["logs"]> = [];
    const { logger, metrics } = this.options;
    for (const record of records) {
      const item = decode(record.payload);
      if (!item) {
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "unreadable_queue_record" });
        logger.error("skipped a queue record that does not decode");
      } else if (item.kind === "telemetry") request.telemetry.push({ deviceId: item.deviceId, batch: item.batch });
      else if (item.kind === "state")
        request.states.push({ deviceId: item.deviceId, receivedAt: item.at, state: item.state });
      else logs.push({ deviceId: item.deviceId, receivedAt: item.at, batch: item.batch });
    }
    // Only when there are logs, so a request without any reads as it always did.
    if (logs.length > 0) request.logs = logs;
    try {
      const result = await this.options.cloud.ingest(request);
      this.failures = 0;
      await this.queue.ack(records.length);
      metrics.inc("kestrel_gateway_forwarded_items_total", {}, records.length);
      metrics.inc("kestrel_gateway_messages_out_total", { kind: "telemetry" }, request.telemetry.length);
      metrics.inc("kestrel_gateway_messages_out_total", { kind: "state" }, request.states.length);
      metrics.inc("kestrel_gateway_messages_out_total", { kind: "log" }, logs.length);
      for (const rejection of result.rejected) {
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: `cloud_${rejection.code}` });
        logger.warn(
          { deviceId: rejection.deviceId, code: rejection.code },
          `cloud rejected an item: ${rejection.message}`,
        );
      }
      logger.debug({ items: records.length, accepted: result.accepted, duplicates: result.duplicates }, "forwarded");
    } catch (error) {
      metrics.inc("kestrel_gateway_forward_failures_total");
      if (error instanceof CloudError && !error.retryable) {
        // The cloud will refuse the same request again: log what is dropped, keep the pipe moving.
        await this.queue.ack(records.length);
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: `cloud_${error.code}` }, records.length);
        logger.error({ code: error.code, dropped: records.length }, error.message);
      } else {
        this.failures++;
        const message = error instanceof Error ? error.message : String(error);
        logger.warn(
          { attempt: this.failures, queued: this.queue.length },
          `cloud delivery failed, will retry: ${message}`,
        );
      }
    } finally {
      metrics.set("kestrel_gateway_queue_depth", this.queue.length);
      metrics.set("kestrel_gateway_queue_bytes", this.queue.bytes);
    }
  }
}
