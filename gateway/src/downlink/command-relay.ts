// Relays commands between the cloud and the devices connected here: long-polls the
// cloud for the commands of devices subscribed to their command topic, publishes
// each to `d/{id}/cmd` at QoS 1, and carries the devices' acks back with retries.
// A command for a device that is not connected stays queued in the cloud. Acks are
// written to their own disk queue before the device gets its PUBACK, so a crash
// between the device's ack and its delivery to the cloud loses none.

import type { CommandAck, DeviceCommand } from "@kestrel/wire";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import type { DiskQueue } from "../uplink/disk-queue.ts";
import type { AckFromDevice, CommandChannel, CommandForDevice } from "./command-channel.ts";
import { DevicePoll } from "./device-poll.ts";
import { DurableRelay } from "./durable-relay.ts";

export interface CommandRelayOptions {
  channel: CommandChannel;
  /** Publishes the command to the device's command topic; resolves once the broker took it. */
  publish(deviceId: string, command: DeviceCommand): Promise<void>;
  /** Holds acks until the cloud took them; the relay closes it when it stops. */
  acks: DiskQueue;
  logger: Logger;
  metrics: GatewayMetrics;
  waitSeconds?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

export class CommandRelay {
  private readonly stopping = new AbortController();
  private readonly poll: DevicePoll<CommandForDevice>;
  private readonly acks: DurableRelay<AckFromDevice>;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: CommandRelayOptions) {
    const { channel, logger, metrics } = options;
    const waitSeconds = options.waitSeconds ?? 25;
    const retry = {
      retryMinMs: options.retryMinMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 30_000,
      stopping: this.stopping.signal,
      logger,
      metrics,
    };
    this.poll = new DevicePoll({
      ...retry,
      operation: "poll",
      fetch: async (deviceIds, signal) => {
        const { commands, invalid } = await channel.poll(deviceIds, waitSeconds, signal);
        if (invalid > 0) logger.warn({ invalid }, "commands from the cloud failed validation and were skipped");
        return commands;
      },
      deliver: (item) => this.deliver(item),
    });
    this.acks = new DurableRelay({
      ...retry,
      queue: options.acks,
      send: (acks) => channel.sendAcks(acks),
      decode: decodeAck,
      what: "command acks",
      relayedMetric: "kestrel_gateway_command_acks_relayed_total",
      droppedMetric: "kestrel_gateway_command_acks_dropped_total",
      operation: "ack",
    });
  }

  start(): void {
    this.loops = [this.poll.run(), this.acks.run()];
  }

  /** The device subscribed to its command topic, so a command published now reaches it. */
  deviceReady(deviceId: string): void {
    this.poll.deviceReady(deviceId);
  }

  deviceGone(deviceId: string): void {
    this.poll.deviceGone(deviceId);
  }

  /** Resolves once the ack is on disk; rejects (QueueFullError) when the ack queue is full. */
  ack(deviceId: string, ack: CommandAck): Promise<void> {
    return this.acks.append({ deviceId, receivedAt: Date.now(), ack });
  }

  get pendingAcks(): number {
    return this.acks.pending;
  }

  /** Ends the long poll, then tries once more to hand pending acks to the cloud; the rest stay on disk. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.loops);
    await this.options.acks.close();
  }

  private async deliver({ deviceId, command }: CommandForDevice): Promise<void> {
    const { logger, metrics } = this.options;
    if (command.expiresAt !== undefined && command.expiresAt <= Date.now()) {
      logger.info({ deviceId, commandId: command.id }, "expired command not delivered");
      return;
    }
    try {
      await this.options.publish(deviceId, command);
      metrics.inc("kestrel_gateway_commands_published_total");
      logger.info({ deviceId, commandId: command.id, name: command.name }, "command published");
    } catch (error) {
      // The cloud offers an unacknowledged command again once its lease runs out.
      metrics.inc("kestrel_gateway_downlink_failures_total", { operation: "publish" });
      logger.warn({ deviceId, commandId: command.id, err: describe(error) }, "command not published");
    }
  }
}

function decodeAck(payload: Buffer): AckFromDevice | undefined {
  try {
    const item = JSON.parse(payload.toString("utf8")) as AckFromDevice;
    return typeof item.deviceId === "string" && typeof item.ack === "object" ? item : undefined;
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
