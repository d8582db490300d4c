// What the gateway does with a message a device published, whichever broker received it (the
// embedded aedes or an external one through the bridge): validate the payload, make it durable
// (the uplink queue, or the command-ack queue) and count it. The broker acknowledges only after,
// and for telemetry also sends the device the application-level ack the intake returns.

import {
  type DeviceState,
  parseCommandAck,
  parseDeviceState,
  parseLogBatch,
  parseTelemetryBatch,
  parseTopic,
  type TelemetryAck,
  type TelemetrySample,
  topics,
  WIRE_VERSION,
} from "@kestrel/wire";
import { artifactTopics, parseArtifactChunkRequest, parseArtifactStatusReport } from "@kestrel/wire/artifacts";
import type { Logger } from "pino";
import type { ArtifactRelay } from "./artifacts/artifact-relay.ts";
import type { ChunkServer } from "./artifacts/chunk-server.ts";
import type { CommandRelay } from "./downlink/command-relay.ts";
import type { GatewayMetrics } from "./metrics.ts";
import { QueueFullError } from "./uplink/disk-queue.ts";
import type { UplinkForwarder } from "./uplink/forwarder.ts";

export interface IntakeOptions {
  forwarder: UplinkForwarder;
  commands: CommandRelay;
  artifacts: ArtifactRelay;
  chunks: ChunkServer;
  metrics: GatewayMetrics;
  logger: Logger;
}

/** A message for a device's topic. */
export interface OutgoingMessage {
  topic: string;
  payload: string | Buffer;
}

/**
 * A message made durable; for a state, the state (the bridge learns presence from it); for a
 * telemetry batch, the ack the broker must publish to the device (QoS 0), since Moddable's client
 * ignores PUBACK and releases a batch only on this ack.
 */
export interface AcceptedMessage {
  state?: DeviceState;
  telemetryAck?: OutgoingMessage;
  /** Answers to publish to the device (QoS 0): the artifact chunks it asked for. */
  replies?: OutgoingMessage[];
}

export class DeviceMessageIntake {
  constructor(private readonly options: IntakeOptions) {}

  /**
   * Resolves once the message is durable, or with undefined once dropped as malformed (acknowledged
   * all the same: refusing it would make the device resend the same bad message forever). Rejects
   * when it could not be queued; the broker must then not acknowledge it, so the device retries.
   */
  async accept(deviceId: string, topic: string, payload: Buffer | string): Promise<AcceptedMessage | undefined> {
    const { forwarder, commands, artifacts, chunks, metrics, logger } = this.options;
    const kind = parseTopic(topic)?.kind;
    const text = Buffer.isBuffer(payload) ? payload.toString("utf8") : String(payload);
    const drop = (code: string, what: string, message: string): undefined => {
      metrics.inc("kestrel_gateway_messages_rejected_total", { reason: code });
      logger.warn({ deviceId, reason: code }, `${what} dropped: ${message}`);
    };
    let durable: Promise<void> | undefined;
    const accepted: AcceptedMessage = {};
    if (kind === "telemetry") {
      const parsed = parseTelemetryBatch(text);
      if (!parsed.ok) return drop(parsed.error.code, "telemetry", parsed.error.message);
      durable = forwarder.enqueueTelemetry(deviceId, parsed.value);
      const { boot, samples } = parsed.value;
      const ack: TelemetryAck = { v: WIRE_VERSION, boot, seq: (samples.at(-1) as TelemetrySample).seq };
      accepted.telemetryAck = { topic: topics.telemetryAck(deviceId), payload: JSON.stringify(ack) };
    } else if (kind === "state") {
      const parsed = parseDeviceState(text);
      if (!parsed.ok) return drop(parsed.error.code, "state", parsed.error.message);
      accepted.state = parsed.value;
      durable = forwarder.enqueueState(deviceId, parsed.value);
    } else if (kind === "log") {
      const parsed = parseLogBatch(text);
      if (!parsed.ok) return drop(parsed.error.code, "log batch", parsed.error.message);
      durable = forwarder.enqueueLogs(deviceId, parsed.value);
    } else if (kind === "cmd/ack") {
      const parsed = parseCommandAck(text);
      if (!parsed.ok) return drop(parsed.error.code, "command ack", parsed.error.message);
      durable = commands.ack(deviceId, parsed.value);
    } else if (kind === "artifact/status") {
      const parsed = parseArtifactStatusReport(text);
      if (!parsed.ok) return drop(parsed.error.code, "artifact report", parsed.error.message);
      durable = artifacts.report(deviceId, parsed.value);
    } else if (kind === "artifact/get") {
      // Not kept: a device whose request or chunk is lost asks again.
      const parsed = parseArtifactChunkRequest(text);
      if (!parsed.ok) return drop(parsed.error.code, "chunk request", parsed.error.message);
      const topic = artifactTopics.chunk(deviceId);
      accepted.replies = (await chunks.serve(deviceId, parsed.value)).map((payload) => ({ topic, payload }));
    }
    try {
      await durable;
    } catch (error) {
      if (error instanceof QueueFullError) metrics.inc("kestrel_gateway_queue_refused_total");
      else metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "queue_write_failed" });
      logger.error({ deviceId, err: error instanceof Error ? error.message : String(error) }, "publish not queued");
      throw error;
    }
    metrics.inc("kestrel_gateway_messages_in_total", { kind: kind ?? "unknown" });
    return accepted;
  }
}
