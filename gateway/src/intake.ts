// What the gateway does with a message a device published, whichever broker received it (the
// embedded one or an external one through the bridge): validate the payload, make it durable
// (the uplink queue, or the command-ack queue) and count it. The broker acknowledges only after,
// and for telemetry also sends the device the application-level ack the intake returns.

import {
  type DeviceState,
  parseCommandAck,
  parseDeviceState,
  parseJson,
  parseLogBatch,
  parseTopic,
  type TelemetrySample,
  topics,
  validateTelemetryBatch,
  WIRE_VERSION,
  type WireError,
} from "@kestrel/wire";
import { artifactTopics, parseArtifactChunkRequest, parseArtifactStatusReport } from "@kestrel/wire/artifacts";
import type { Logger } from "pino";
import type { ArtifactRelay } from "./artifacts/artifact-relay.ts";
import type { ChunkServer } from "./artifacts/chunk-server.ts";
import type { CommandRelay } from "./downlink/command-relay.ts";
import type { CounterSeries, GatewayMetrics } from "./metrics.ts";
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

const MAX_CACHED_ACK_TOPICS = 100_000;

/** What keep answers for a malformed message, dropped. */
const DROPPED = Symbol("dropped");

/** A message handed to its queue (the write's promise), dropped, or on a topic nothing keeps (undefined). */
type Kept = Promise<void> | typeof DROPPED | undefined;

/** A TelemetryAck's JSON: boot and seq are validated integers, which a template writes as JSON.stringify would. */
function telemetryAckJson(boot: number, seq: number): string {
  return `{"v":${WIRE_VERSION},"boot":${boot},"seq":${seq}}`;
}

/**
 * Whether a valid telemetry batch's JSON holds nothing that validation left out (a property it does
 * not know), so that its bytes say exactly what the validated batch says. Validation requires v,
 * boot and samples, and seq, ts and m in each sample, and checks every metric in m.
 */
function holdsOnlyValidated(raw: unknown): boolean {
  const batch = raw as { samples: object[] };
  if (Object.keys(batch).length !== 3) return false;
  for (const sample of batch.samples) if (Object.keys(sample).length !== 3) return false;
  return true;
}

export class DeviceMessageIntake {
  /** kestrel_gateway_messages_in_total by kind, bound once: counted on every message. */
  private readonly accepted = new Map<string, CounterSeries>();
  /**
   * Each device's telemetry ack topic, built once: the same string every time, whose hash V8 keeps
   * for the broker's lookup in the device's subscriptions (a string built anew is hashed anew).
   */
  private readonly ackTopics = new Map<string, string>();

  constructor(private readonly options: IntakeOptions) {}

  /**
   * Resolves once the message is durable, or with undefined once dropped as malformed (acknowledged
   * all the same: refusing it would make the device resend the same bad message forever). Rejects
   * when it could not be queued; the broker must then not acknowledge it, so the device retries.
   * Not an async function: the way a message takes is one promise on its disk group's (an async
   * function's awaits cost a measurable share of the gateway's CPU a message).
   */
  accept(deviceId: string, topic: string, payload: Buffer | string): Promise<AcceptedMessage | undefined> {
    const kind = parseTopic(topic)?.kind ?? "unknown";
    const text = Buffer.isBuffer(payload) ? payload.toString("utf8") : String(payload);
    if (kind === "artifact/get") return this.serveChunks(deviceId, text);
    const accepted: AcceptedMessage = {};
    let durable: Kept;
    try {
      durable = this.keep(deviceId, kind, text, payload, accepted);
    } catch (error) {
      return this.notQueued(deviceId, error);
    }
    if (durable === DROPPED) return Promise.resolve(undefined);
    if (!durable) {
      this.countAccepted(kind);
      return Promise.resolve(accepted);
    }
    return durable.then(
      () => {
        this.countAccepted(kind);
        return accepted;
      },
      (error: unknown) => this.notQueued(deviceId, error),
    );
  }

  /** Validates a message and hands it to its queue; fills in what the broker answers the device with. */
  private keep(
    deviceId: string,
    kind: string,
    text: string,
    payload: Buffer | string,
    accepted: AcceptedMessage,
  ): Kept {
    const { forwarder, commands, artifacts } = this.options;
    if (kind === "telemetry") {
      const json = parseJson(text);
      const parsed = json.ok ? validateTelemetryBatch(json.value) : json;
      if (!parsed.ok) return this.drop(deviceId, "telemetry", parsed.error);
      // The device's bytes go to the queue as they came when they say what was validated: no
      // serialising the batch again (that was a tenth of the intake's CPU).
      const exact = Buffer.isBuffer(payload) && holdsOnlyValidated(json.ok && json.value);
      const { boot, samples } = parsed.value;
      const seq = (samples.at(-1) as TelemetrySample).seq;
      accepted.telemetryAck = { topic: this.telemetryAckTopic(deviceId), payload: telemetryAckJson(boot, seq) };
      return forwarder.enqueueTelemetry(deviceId, parsed.value, Date.now(), exact ? payload : undefined);
    }
    if (kind === "state") {
      const parsed = parseDeviceState(text);
      if (!parsed.ok) return this.drop(deviceId, "state", parsed.error);
      accepted.state = parsed.value;
      return forwarder.enqueueState(deviceId, parsed.value);
    }
    if (kind === "log") {
      const parsed = parseLogBatch(text);
      if (!parsed.ok) return this.drop(deviceId, "log batch", parsed.error);
      return forwarder.enqueueLogs(deviceId, parsed.value);
    }
    if (kind === "cmd/ack") {
      const parsed = parseCommandAck(text);
      if (!parsed.ok) return this.drop(deviceId, "command ack", parsed.error);
      return commands.ack(deviceId, parsed.value);
    }
    if (kind === "artifact/status") {
      const parsed = parseArtifactStatusReport(text);
      if (!parsed.ok) return this.drop(deviceId, "artifact report", parsed.error);
      return artifacts.report(deviceId, parsed.value);
    }
    return undefined;
  }

  /** Chunks a device asked for: not kept, a device whose request or chunk is lost asks again. */
  private async serveChunks(deviceId: string, text: string): Promise<AcceptedMessage | undefined> {
    const parsed = parseArtifactChunkRequest(text);
    if (!parsed.ok) {
      this.drop(deviceId, "chunk request", parsed.error);
      return undefined;
    }
    const topic = artifactTopics.chunk(deviceId);
    const chunks = await this.options.chunks.serve(deviceId, parsed.value);
    this.countAccepted("artifact/get");
    return { replies: chunks.map((payload) => ({ topic, payload })) };
  }

  /** Counts and logs a message that could not be made durable, and rejects with why. */
  private notQueued(deviceId: string, error: unknown): Promise<never> {
    const { metrics, logger } = this.options;
    if (error instanceof QueueFullError) metrics.inc("kestrel_gateway_queue_refused_total");
    else metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "queue_write_failed" });
    logger.error({ deviceId, err: error instanceof Error ? error.message : String(error) }, "publish not queued");
    return Promise.reject(error);
  }

  private telemetryAckTopic(deviceId: string): string {
    let topic = this.ackTopics.get(deviceId);
    if (topic === undefined) {
      // Bounded: a gateway serves a fleet, but devices come and go over its lifetime.
      if (this.ackTopics.size >= MAX_CACHED_ACK_TOPICS) this.ackTopics.clear();
      topic = topics.telemetryAck(deviceId);
      this.ackTopics.set(deviceId, topic);
    }
    return topic;
  }

  private countAccepted(kind: string): void {
    let series = this.accepted.get(kind);
    if (!series) {
      series = this.options.metrics.counter("kestrel_gateway_messages_in_total", { kind });
      this.accepted.set(kind, series);
    }
    series.inc();
  }

  /** A malformed message, dropped: counted and logged with why. */
  private drop(deviceId: string, what: string, error: WireError): typeof DROPPED {
    this.options.metrics.inc("kestrel_gateway_messages_rejected_total", { reason: error.code });
    this.options.logger.warn({ deviceId, reason: error.code }, `${what} dropped: ${error.message}`);
    return DROPPED;
  }
}
