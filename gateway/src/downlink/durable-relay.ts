// Carries what devices report about downlink work (command acks, artifact status reports) to the
// cloud: each item is written to its own disk queue before the device's PUBACK, sent in batches
// with retries while the cloud is away, and dropped only once the cloud took it (or refused it for
// good), so a gateway restart loses none.

import { CloudError } from "../uplink/cloud-client.ts";
import type { DiskQueue } from "../uplink/disk-queue.ts";
import { backoffDelay, type RetryLoopOptions, sleep } from "./backoff.ts";

export interface DurableRelayOptions<T> extends RetryLoopOptions {
  queue: DiskQueue;
  send(items: T[]): Promise<void>;
  /** Undefined for a record that does not decode (counted as dropped). */
  decode(payload: Buffer): T | undefined;
  /** What is relayed, for logs ("command acks"). */
  what: string;
  /** Counters of items delivered and given up on. */
  relayedMetric: string;
  droppedMetric: string;
  /** kestrel_gateway_downlink_failures_total{operation} of a failed delivery. */
  operation: string;
}

const BATCH = 200;

export class DurableRelay<T> {
  private wake: (() => void) | undefined;

  constructor(private readonly options: DurableRelayOptions<T>) {
    options.stopping.addEventListener("abort", () => this.wake?.());
  }

  /** Resolves once the item is on disk; rejects (QueueFullError) when its queue is full. */
  async append(item: T): Promise<void> {
    await this.options.queue.append(JSON.stringify(item));
    this.wake?.();
  }

  get pending(): number {
    return this.options.queue.length;
  }

  /** Delivers until stopped; on stop, tries once more, and what the cloud did not take stays on disk. */
  async run(): Promise<void> {
    const { queue, logger, metrics, what, stopping } = this.options;
    let failures = 0;
    for (;;) {
      if (queue.length === 0) {
        if (stopping.aborted) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const records = await queue.peek(BATCH);
      const batch = records.flatMap((record) => this.options.decode(record.payload) ?? []);
      if (batch.length < records.length) {
        metrics.inc(this.options.droppedMetric, {}, records.length - batch.length);
        logger.error({ count: records.length - batch.length }, `skipped ${what} records that do not decode`);
      }
      try {
        if (batch.length > 0) await this.options.send(batch);
        await queue.ack(records.length);
        failures = 0;
        metrics.inc(this.options.relayedMetric, {}, batch.length);
      } catch (error) {
        failures++;
        metrics.inc("kestrel_gateway_downlink_failures_total", { operation: this.options.operation });
        const err = error instanceof Error ? error.message : String(error);
        const retryable = !(error instanceof CloudError) || error.retryable;
        if (!retryable) {
          await queue.ack(records.length);
          metrics.inc(this.options.droppedMetric, {}, batch.length);
          logger.error({ err, count: batch.length }, `cloud refused ${what}; dropped`);
        } else if (stopping.aborted) {
          logger.error({ err, count: queue.length }, `stopping with ${what} not relayed`);
          return;
        } else {
          logger.warn({ err, failures }, `${what} not relayed, will retry`);
          await sleep(backoffDelay(failures, this.options.retryMinMs, this.options.retryMaxMs), stopping);
        }
      }
    }
  }
}
