// What the command relay and the artifact relay share: a long poll to the cloud for work addressed
// to the devices connected here (DevicePoll), and a durable relay carrying the devices' answers back
// (DurableRelay). A subclass says how to fetch, deliver and send.

import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import type { DiskQueue } from "../uplink/disk-queue.ts";
import { DevicePoll, type DevicePollOptions } from "./device-poll.ts";
import { DurableRelay, type DurableRelayOptions } from "./durable-relay.ts";

export interface DownlinkRelayOptions {
  /** Holds the devices' answers until the cloud took them; the relay closes it when it stops. */
  answers: DiskQueue;
  logger: Logger;
  metrics: GatewayMetrics;
  waitSeconds?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

export abstract class DownlinkRelay<Work, Answer> {
  protected readonly waitSeconds: number;
  private readonly stopping = new AbortController();
  private readonly poll: DevicePoll<Work>;
  private readonly relay: DurableRelay<Answer>;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly queue: DiskQueue,
    options: Omit<DownlinkRelayOptions, "answers">,
    parts: {
      poll: Pick<DevicePollOptions<Work>, "operation" | "fetch">;
      answers: Pick<
        DurableRelayOptions<Answer>,
        "send" | "decode" | "what" | "relayedMetric" | "droppedMetric" | "operation"
      >;
    },
  ) {
    this.waitSeconds = options.waitSeconds ?? 25;
    const loop = {
      retryMinMs: options.retryMinMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 30_000,
      stopping: this.stopping.signal,
      logger: options.logger,
      metrics: options.metrics,
    };
    this.poll = new DevicePoll({ ...loop, ...parts.poll, deliver: (work) => this.deliver(work) });
    this.relay = new DurableRelay({ ...loop, ...parts.answers, queue });
  }

  start(): void {
    this.loops = [this.poll.run(), this.relay.run()];
  }

  /** The device listens on the topic the work is published on. */
  deviceReady(deviceId: string): void {
    this.poll.deviceReady(deviceId);
  }

  /** False when the device was not listening. */
  deviceGone(deviceId: string): boolean {
    return this.poll.deviceGone(deviceId);
  }

  protected isListening(deviceId: string): boolean {
    return this.poll.has(deviceId);
  }

  /** Ends the long poll, then tries once more to hand pending answers to the cloud; the rest stay on disk. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.loops);
    await this.queue.close();
  }

  protected get pendingAnswers(): number {
    return this.relay.pending;
  }

  /** Resolves once the answer is on disk; rejects (QueueFullError) when the queue is full. */
  protected answer(answer: Answer): Promise<void> {
    return this.relay.append(answer);
  }

  /** Hands one piece of work to its device; failures are logged here (the cloud offers it again). */
  protected abstract deliver(work: Work): Promise<void>;
}

/**
 * The JSON item a device's answer was stored as, if it has a device id, a receive time and one of
 * the named objects.
 */
export function decodeAnswer<T>(payload: Buffer, ...fields: string[]): T | undefined {
  try {
    const item = JSON.parse(payload.toString("utf8")) as Record<string, unknown>;
    const valid =
      typeof item.deviceId === "string" &&
      typeof item.receivedAt === "number" &&
      fields.some((field) => typeof item[field] === "object");
    return valid ? (item as T) : undefined;
  } catch {
    return undefined;
  }
}
