// Sends what devices published to the cloud in batches: one request in flight
// at a time, retried with exponential backoff and jitter while the cloud is
// unreachable. The cloud deduplicates on (device, boot, seq), so a retry of a
// request whose answer was lost never stores a sample twice.
//
// The queue lives in memory and is bounded; the durable on-disk queue that
// survives a gateway crash is a later step (issue 4).

import type { DeviceState, IngestRequest, TelemetryBatch } from "@kestrel/wire";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import { type CloudClient, CloudError } from "./cloud-client.ts";

type QueuedItem =
  | { kind: "telemetry"; deviceId: string; batch: TelemetryBatch }
  | { kind: "state"; deviceId: string; state: DeviceState; receivedAt: number };

export interface ForwarderOptions {
  cloud: Pick<CloudClient, "ingest">;
  logger: Logger;
  metrics: GatewayMetrics;
  intervalMs: number;
  maxBatches: number;
  maxItems: number;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;

export class UplinkForwarder {
  private readonly queue: QueuedItem[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private failures = 0;
  private stopped = true;

  constructor(private readonly options: ForwarderOptions) {}

  get depth(): number {
    return this.queue.length;
  }

  enqueueTelemetry(deviceId: string, batch: TelemetryBatch): void {
    this.push({ kind: "telemetry", deviceId, batch });
  }

  enqueueState(deviceId: string, state: DeviceState, receivedAt: number): void {
    this.push({ kind: "state", deviceId, state, receivedAt });
  }

  start(): void {
    this.stopped = false;
    this.schedule(this.options.intervalMs);
  }

  /** Stops the loop after trying, until the deadline, to deliver what is queued. */
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
      this.options.logger.warn({ queued: this.queue.length }, "gateway stopping with undelivered items");
    }
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

  private push(item: QueuedItem): void {
    if (this.queue.length >= this.options.maxItems) {
      this.queue.shift();
      this.options.metrics.inc("kestrel_gateway_queue_dropped_total");
      this.options.logger.error({ maxItems: this.options.maxItems }, "uplink queue full: dropped the oldest item");
    }
    this.queue.push(item);
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
    const items = this.queue.slice(0, this.options.maxBatches);
    const request: IngestRequest = { telemetry: [], states: [] };
    for (const item of items) {
      if (item.kind === "telemetry") request.telemetry.push({ deviceId: item.deviceId, batch: item.batch });
      else request.states.push({ deviceId: item.deviceId, receivedAt: item.receivedAt, state: item.state });
    }
    const { logger, metrics } = this.options;
    try {
      const result = await this.options.cloud.ingest(request);
      this.failures = 0;
      this.queue.splice(0, items.length);
      metrics.inc("kestrel_gateway_forwarded_items_total", {}, items.length);
      for (const rejection of result.rejected) {
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: `cloud_${rejection.code}` });
        logger.warn(
          { deviceId: rejection.deviceId, code: rejection.code },
          `cloud rejected an item: ${rejection.message}`,
        );
      }
      logger.debug({ items: items.length, accepted: result.accepted, duplicates: result.duplicates }, "forwarded");
    } catch (error) {
      metrics.inc("kestrel_gateway_forward_failures_total");
      if (error instanceof CloudError && !error.retryable) {
        // The cloud will refuse the same request again: log what is dropped, keep the pipe moving.
        this.queue.splice(0, items.length);
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: `cloud_${error.code}` }, items.length);
        logger.error({ code: error.code, dropped: items.length }, error.message);
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
    }
  }
}
