// Relays commands between the cloud and the devices connected here: long-polls the
// cloud for the commands of devices subscribed to their command topic, publishes
// each to `d/{id}/cmd` at QoS 1, and carries the devices' acks back with retries.
// A command for a device that is not connected stays queued in the cloud. Acks are
// written to their own disk queue before the device gets its PUBACK, so a crash
// between the device's ack and its delivery to the cloud loses none.

import type { CommandAck, DeviceCommand } from "@kestrel/wire";
import type { AckFromDevice, CommandChannel, CommandForDevice } from "./command-channel.ts";
import { DownlinkRelay, type DownlinkRelayOptions, decodeAnswer } from "./downlink-relay.ts";

export interface CommandRelayOptions extends Omit<DownlinkRelayOptions, "answers"> {
  channel: CommandChannel;
  /** Publishes the command to the device's command topic; resolves once the broker took it. */
  publish(deviceId: string, command: DeviceCommand): Promise<void>;
  /** Holds acks until the cloud took them; the relay closes it when it stops. */
  acks: DownlinkRelayOptions["answers"];
}

export class CommandRelay extends DownlinkRelay<CommandForDevice, AckFromDevice> {
  constructor(private readonly options: CommandRelayOptions) {
    super(options.acks, options, {
      poll: {
        operation: "poll",
        fetch: async (deviceIds, signal) => {
          const { commands, invalid } = await options.channel.poll(deviceIds, this.waitSeconds, signal);
          if (invalid > 0)
            options.logger.warn({ invalid }, "commands from the cloud failed validation and were skipped");
          return commands;
        },
      },
      answers: {
        send: (acks) => options.channel.sendAcks(acks),
        decode: (payload) => decodeAnswer<AckFromDevice>(payload, "ack"),
        what: "command acks",
        relayedMetric: "kestrel_gateway_command_acks_relayed_total",
        droppedMetric: "kestrel_gateway_command_acks_dropped_total",
        operation: "ack",
      },
    });
  }

  /** Resolves once the ack is on disk; rejects (QueueFullError) when the ack queue is full. */
  ack(deviceId: string, ack: CommandAck): Promise<void> {
    return this.answer({ deviceId, receivedAt: Date.now(), ack });
  }

  get pendingAcks(): number {
    return this.pendingAnswers;
  }

  protected async deliver({ deviceId, command }: CommandForDevice): Promise<void> {
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
      logger.warn(
        { deviceId, commandId: command.id, err: error instanceof Error ? error.message : String(error) },
        "command not published",
      );
    }
  }
}
