// Bridge mode: instead of running the embedded broker, the gateway is one client of an external
// broker (Mosquitto, EMQX) that the devices connect to. It holds a persistent MQTT 5 session,
// so QoS 1 messages published while it is away wait in the broker, and it acknowledges each one
// (PUBACK) only once the intake made it durable (mqtt.js customHandleAcks). The external broker
// authenticates devices and enforces their ACLs; the gateway takes the device id from the topic.
// Telemetry acks and artifact chunks for the devices go back through the same connection.

import { type DeviceCommand, parseTopic, topics } from "@kestrel/wire";
import { type ArtifactOffer, artifactTopics } from "@kestrel/wire/artifacts";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import type { Logger } from "pino";
import type { ArtifactRelay } from "../artifacts/artifact-relay.ts";
import type { DeviceBroker } from "../broker/embedded-broker.ts";
import type { ExternalBrokerConfig } from "../config.ts";
import type { CommandRelay } from "../downlink/command-relay.ts";
import type { DeviceMessageIntake, OutgoingMessage } from "../intake.ts";
import type { GatewayMetrics } from "../metrics.ts";

export interface BridgeOptions {
  config: ExternalBrokerConfig;
  intake: DeviceMessageIntake;
  commands: CommandRelay;
  artifacts: ArtifactRelay;
  metrics: GatewayMetrics;
  logger: Logger;
}

/** What devices publish and the gateway takes; `+` is the device id. */
const UPLINK_TOPICS = [
  "d/+/telemetry",
  "d/+/state",
  "d/+/log",
  "d/+/cmd/ack",
  "d/+/artifact/get",
  "d/+/artifact/status",
];
const RECONNECT_MS = 1000;
/** How long the broker keeps the gateway's session (and the messages for it) while the gateway is away. */
const SESSION_EXPIRY_S = 7 * 24 * 3600;

export async function startBridge(options: BridgeOptions): Promise<DeviceBroker> {
  const { config, intake, commands, artifacts, metrics, logger } = options;
  // The broker's subscribe events are out of sight: a device counts as listening for commands from its
  // online state (sent after it subscribed) until its offline state or its will.
  const online = new Set<string>();
  let client: MqttClient | undefined;
  let reconnecting = false;

  /** Without a PUBACK the broker resends the message, but only on a new connection of the session. */
  const redeliverLater = () => {
    if (reconnecting || !client) return;
    reconnecting = true;
    const current = client;
    current.end(true, {}, () => {
      setTimeout(() => {
        reconnecting = false;
        current.reconnect();
      }, RECONNECT_MS).unref();
    });
  };

  /** QoS 0: a lost ack only delays the device, which resends and gets the next, cumulative one; a lost chunk is asked for again. */
  const publishToDevice = (deviceId: string, message: OutgoingMessage, onSent?: () => void) => {
    client?.publish(message.topic, message.payload, { qos: 0 }, (error) => {
      if (error) logger.warn({ deviceId, topic: message.topic, err: error.message }, "publish to device failed");
      else onSent?.();
    });
  };
  const countAck = () => metrics.inc("kestrel_gateway_telemetry_acks_published_total");

  const clientOptions: IClientOptions = {
    clientId: config.clientId,
    // MQTT 5: mqtt.js honours customHandleAcks only there, and the session outlives a connection
    // only with an expiry interval.
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: SESSION_EXPIRY_S },
    reconnectPeriod: RECONNECT_MS,
    connectTimeout: 10_000,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(config.ca !== undefined ? { ca: config.ca } : {}),
    // mqtt.js sends the PUBACK when done is called, and reads the next packet only then.
    customHandleAcks: (topic, message, _packet, done) => {
      const deviceId = parseTopic(topic)?.deviceId;
      if (!deviceId) {
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "bad_topic" });
        logger.warn({ topic }, "message on a topic that names no device dropped");
        return done(0);
      }
      intake.accept(deviceId, topic, message).then(
        (accepted) => {
          if (accepted?.state?.online === true) {
            online.add(deviceId);
            commands.deviceReady(deviceId);
            artifacts.deviceReady(deviceId);
          } else if (accepted?.state?.online === false) {
            online.delete(deviceId);
            commands.deviceGone(deviceId);
            artifacts.deviceGone(deviceId);
          }
          if (accepted?.telemetryAck) publishToDevice(deviceId, accepted.telemetryAck, countAck);
          for (const reply of accepted?.replies ?? []) publishToDevice(deviceId, reply);
          done(0);
        },
        (error: unknown) => {
          done(error instanceof Error ? error : new Error(String(error)));
          redeliverLater();
        },
      );
    },
  };
  client = await connectAsync(config.url, clientOptions);
  client.on("error", (error) => logger.warn({ err: error.message }, "external broker connection error"));
  client.on("connect", () => logger.info({ url: config.url }, "connected to the external broker"));
  client.on("offline", () => logger.warn({ url: config.url }, "external broker unreachable, reconnecting"));
  await client.subscribeAsync(UPLINK_TOPICS, { qos: 1 });
  logger.info({ url: config.url, clientId: config.clientId }, "bridging the external broker");
  const bridge = client;

  return {
    mqttPort: undefined,
    mqttTlsPort: undefined,
    get connectedClients() {
      return online.size;
    },
    async publishCommand(deviceId: string, command: DeviceCommand) {
      await bridge.publishAsync(topics.command(deviceId), JSON.stringify(command), { qos: 1 });
    },
    async publishOffer(deviceId: string, offer: ArtifactOffer) {
      await bridge.publishAsync(artifactTopics.offer(deviceId), JSON.stringify(offer), { qos: 1 });
    },
    async close() {
      await bridge.endAsync();
    },
  };
}
