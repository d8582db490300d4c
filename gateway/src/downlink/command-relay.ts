// Relays commands between the cloud and the devices connected here: long-polls the
// cloud for the commands of devices subscribed to their command topic, publishes
// each to `d/{id}/cmd` at QoS 1, and carries the devices' acks back with retries.
// A command for a device that is not connected stays queued in the cloud: one handed
// out while its device was going away is not published but reported back
// (`not_connected`), and one published to a connection that closed before the device
// acked it is reported too (`connection_lost`), so the cloud offers it again as soon
// as the device is back rather than when its lease runs out. Those reports travel in
// order with the acks, on their own disk queue, written before the device gets its
// PUBACK, so a crash between the device's ack and its delivery to the cloud loses none.

import type { CommandAck } from "@kestrel/wire";
import type {
  AckFromDevice,
  CommandChannel,
  CommandForDevice,
  DeliveryReport,
  RelayRecord,
} from "./command-channel.ts";
import { DownlinkRelay, type DownlinkRelayOptions, decodeAnswer } from "./downlink-relay.ts";

export interface CommandRelayOptions extends Omit<DownlinkRelayOptions, "answers"> {
  channel: CommandChannel;
  /** Publishes the command to the device's command topic; resolves once the broker took it. */
  publish(deviceId: string, command: CommandForDevice["command"]): Promise<void>;
  /** Holds acks until the cloud took them; the relay closes it when it stops. */
  acks: DownlinkRelayOptions["answers"];
}

export class CommandRelay extends DownlinkRelay<CommandForDevice, RelayRecord> {
  /** Commands published to each connected device that it has not acked yet. */
  private readonly unacked = new Map<string, Set<string>>();

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
        send: (records) => options.channel.sendAcks(records),
        decode: (payload) => decodeAnswer<RelayRecord>(payload, "ack", "delivery"),
        what: "command acks",
        relayedMetric: "kestrel_gateway_command_acks_relayed_total",
        droppedMetric: "kestrel_gateway_command_acks_dropped_total",
        operation: "ack",
      },
    });
  }

  /** The device left: the cloud keeps its commands queued, and hands those it never acked out again. */
  override deviceGone(deviceId: string): boolean {
    if (!super.deviceGone(deviceId)) return false;
    const unacked = this.unacked.get(deviceId);
    this.unacked.delete(deviceId);
    for (const commandId of unacked ?? []) this.report(deviceId, commandId, "connection_lost");
    // The poll in flight is left alone: aborting it could lose what the cloud claims for the other
    // devices meanwhile; a command it brings for this one is handed back (deliver).
    return true;
  }

  /** Resolves once the ack is on disk; rejects (QueueFullError) when the ack queue is full. */
  ack(deviceId: string, ack: CommandAck): Promise<void> {
    this.unacked.get(deviceId)?.delete(ack.id);
    const item: AckFromDevice = { deviceId, receivedAt: Date.now(), ack };
    return this.answer(item);
  }

  get pendingAcks(): number {
    return this.pendingAnswers;
  }

  /** Tells the cloud what became of a command; a report that cannot be queued only leaves it to the lease. */
  private report(deviceId: string, commandId: string, outcome: DeliveryReport["delivery"]["outcome"]): void {
    const item: DeliveryReport = { deviceId, receivedAt: Date.now(), delivery: { id: commandId, outcome } };
    this.answer(item).catch((error: unknown) =>
      this.options.logger.warn({ deviceId, commandId, outcome, err: describe(error) }, "delivery report not queued"),
    );
  }

  protected async deliver({ deviceId, command }: CommandForDevice): Promise<void> {
    const { logger, metrics } = this.options;
    if (command.expiresAt !== undefined && command.expiresAt <= Date.now()) {
      logger.info({ deviceId, commandId: command.id }, "expired command not delivered");
      return;
    }
    // The poll that claimed it named the device before it went away: published now, it would reach nobody.
    if (!this.isListening(deviceId)) {
      logger.info({ deviceId, commandId: command.id }, "device gone: command handed back to the cloud");
      this.report(deviceId, command.id, "not_connected");
      return;
    }
    try {
      await this.options.publish(deviceId, command);
      metrics.inc("kestrel_gateway_commands_published_total");
      logger.info({ deviceId, commandId: command.id, name: command.name }, "command published");
    } catch (error) {
      metrics.inc("kestrel_gateway_downlink_failures_total", { operation: "publish" });
      logger.warn({ deviceId, commandId: command.id, err: describe(error) }, "command not published");
      this.report(deviceId, command.id, "not_connected");
      return;
    }
    if (!this.isListening(deviceId)) {
      // It left while the publish was under way: deviceGone has run already.
      this.report(deviceId, command.id, "connection_lost");
      return;
    }
    const unacked = this.unacked.get(deviceId) ?? new Set<string>();
    this.unacked.set(deviceId, unacked.add(command.id));
    this.report(deviceId, command.id, "published");
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
