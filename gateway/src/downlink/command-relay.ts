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

import type { CommandAck, DeviceCommand } from "@kestrel/wire";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import { CloudError } from "../uplink/cloud-client.ts";
import type { DiskQueue } from "../uplink/disk-queue.ts";
import type { AckFromDevice, CommandChannel, DeliveryReport, RelayRecord } from "./command-channel.ts";

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

const ACK_BATCH = 200;
/** Devices connecting in a burst restart the long poll once, not once each. */
const RESTART_DEBOUNCE_MS = 50;

export class CommandRelay {
  private readonly devices = new Set<string>();
  /** Commands published to each connected device that it has not acked yet. */
  private readonly unacked = new Map<string, Set<string>>();
  private readonly acks: DiskQueue;
  private readonly stopping = new AbortController();
  private round: AbortController | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private wakePoll: (() => void) | undefined;
  private wakeAcks: (() => void) | undefined;
  private loops: Promise<void>[] = [];
  private readonly waitSeconds: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;

  constructor(private readonly options: CommandRelayOptions) {
    this.acks = options.acks;
    this.waitSeconds = options.waitSeconds ?? 25;
    this.retryMinMs = options.retryMinMs ?? 1000;
    this.retryMaxMs = options.retryMaxMs ?? 30_000;
  }

  start(): void {
    this.loops = [this.pollLoop(), this.ackLoop()];
  }

  /** The device subscribed to its command topic, so a command published now reaches it. */
  deviceReady(deviceId: string): void {
    if (this.devices.has(deviceId)) return;
    this.devices.add(deviceId);
    // An idle loop's next poll names this device already; aborting it would waste what it claims.
    if (this.wakePoll) {
      this.wakePoll();
      return;
    }
    // The poll in flight asks for the old set of devices; ask again with this one in it.
    this.restartTimer ??= setTimeout(() => {
      this.restartTimer = undefined;
      this.round?.abort();
    }, RESTART_DEBOUNCE_MS);
  }

  /** The device left: the cloud keeps its commands queued, and hands those it never acked out again. */
  deviceGone(deviceId: string): void {
    if (!this.devices.delete(deviceId)) return;
    const unacked = this.unacked.get(deviceId);
    this.unacked.delete(deviceId);
    for (const commandId of unacked ?? []) this.report(deviceId, commandId, "connection_lost");
    // The poll in flight is left alone: aborting it could lose what the cloud claims for the other
    // devices meanwhile; a command it brings for this one is handed back (deliver).
  }

  /** Resolves once the ack is on disk; rejects (QueueFullError) when the ack queue is full. */
  async ack(deviceId: string, ack: CommandAck): Promise<void> {
    const item: AckFromDevice = { deviceId, receivedAt: Date.now(), ack };
    this.unacked.get(deviceId)?.delete(ack.id);
    await this.enqueue(item);
  }

  private async enqueue(item: RelayRecord): Promise<void> {
    await this.acks.append(JSON.stringify(item));
    this.wakeAcks?.();
  }

  /** Tells the cloud what became of a command; a report that cannot be queued only leaves it to the lease. */
  private report(deviceId: string, commandId: string, outcome: DeliveryReport["delivery"]["outcome"]): void {
    const item: DeliveryReport = { deviceId, receivedAt: Date.now(), delivery: { id: commandId, outcome } };
    this.enqueue(item).catch((error: unknown) =>
      this.options.logger.warn({ deviceId, commandId, outcome, err: describe(error) }, "delivery report not queued"),
    );
  }

  get pendingAcks(): number {
    return this.acks.length;
  }

  /** Ends the long poll, then tries once more to hand pending acks to the cloud; the rest stay on disk. */
  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.stopping.abort();
    this.round?.abort();
    this.wakePoll?.();
    this.wakeAcks?.();
    await Promise.all(this.loops);
    await this.acks.close();
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private async pollLoop(): Promise<void> {
    const { channel, logger, metrics } = this.options;
    let failures = 0;
    while (!this.stopped) {
      if (this.devices.size === 0) {
        await new Promise<void>((resolve) => {
          this.wakePoll = resolve;
        });
        this.wakePoll = undefined;
        continue;
      }
      const round = new AbortController();
      this.round = round;
      try {
        const { commands, invalid } = await channel.poll([...this.devices], this.waitSeconds, round.signal);
        failures = 0;
        if (invalid > 0) logger.warn({ invalid }, "commands from the cloud failed validation and were skipped");
        for (const { deviceId, command } of commands) await this.deliver(deviceId, command);
      } catch (error) {
        // Aborted on purpose: the device set changed, or the gateway is stopping.
        if (round.signal.aborted) continue;
        failures++;
        metrics.inc("kestrel_gateway_downlink_failures_total", { operation: "poll" });
        logger.warn({ err: describe(error), failures }, "command poll failed");
        await this.backoff(failures);
      }
    }
  }

  private async deliver(deviceId: string, command: DeviceCommand): Promise<void> {
    const { logger, metrics } = this.options;
    if (command.expiresAt !== undefined && command.expiresAt <= Date.now()) {
      logger.info({ deviceId, commandId: command.id }, "expired command not delivered");
      return;
    }
    // The poll that claimed it named the device before it went away: published now, it would reach nobody.
    if (!this.devices.has(deviceId)) {
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
    if (!this.devices.has(deviceId)) {
      // It left while the publish was under way: deviceGone has run already.
      this.report(deviceId, command.id, "connection_lost");
      return;
    }
    const unacked = this.unacked.get(deviceId) ?? new Set<string>();
    this.unacked.set(deviceId, unacked.add(command.id));
    this.report(deviceId, command.id, "published");
  }

  private async ackLoop(): Promise<void> {
    const { channel, logger, metrics } = this.options;
    let failures = 0;
    for (;;) {
      if (this.acks.length === 0) {
        if (this.stopped) return;
        await new Promise<void>((resolve) => {
          this.wakeAcks = resolve;
        });
        this.wakeAcks = undefined;
        continue;
      }
      const records = await this.acks.peek(ACK_BATCH);
      const batch = records.flatMap((record) => decodeAck(record.payload) ?? []);
      if (batch.length < records.length) {
        metrics.inc("kestrel_gateway_command_acks_dropped_total", {}, records.length - batch.length);
        logger.error({ count: records.length - batch.length }, "skipped ack records that do not decode");
      }
      try {
        if (batch.length > 0) await channel.sendAcks(batch);
        await this.acks.ack(records.length);
        failures = 0;
        metrics.inc("kestrel_gateway_command_acks_relayed_total", {}, batch.length);
      } catch (error) {
        failures++;
        metrics.inc("kestrel_gateway_downlink_failures_total", { operation: "ack" });
        const retryable = !(error instanceof CloudError) || error.retryable;
        if (!retryable) {
          await this.acks.ack(records.length);
          metrics.inc("kestrel_gateway_command_acks_dropped_total", {}, batch.length);
          logger.error({ err: describe(error), count: batch.length }, "cloud refused command acks; dropped");
        } else if (this.stopped) {
          logger.error({ err: describe(error), count: this.acks.length }, "stopping with command acks not relayed");
          return;
        } else {
          logger.warn({ err: describe(error), failures }, "command acks not relayed, will retry");
          await this.backoff(failures);
        }
      }
    }
  }

  /** Exponential backoff with full jitter, cut short by stop(). */
  private backoff(failures: number): Promise<void> {
    const ceiling = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(failures - 1, 16));
    const ms = this.retryMinMs / 2 + Math.random() * (ceiling - this.retryMinMs / 2);
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.stopping.signal;
      signal.addEventListener("abort", done, { once: true });
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
    });
  }
}

function decodeAck(payload: Buffer): RelayRecord | undefined {
  try {
    const item = JSON.parse(payload.toString("utf8")) as Partial<AckFromDevice & DeliveryReport>;
    const valid =
      typeof item.deviceId === "string" &&
      typeof item.receivedAt === "number" &&
      (typeof item.ack === "object" || typeof item.delivery === "object");
    return valid ? (item as RelayRecord) : undefined;
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
