// Topic access rules: a device publishes and subscribes only below its own
// `d/{id}/` namespace, and only to the topics the protocol defines.

import { parseTopic, topics } from "@kestrel/wire";
import { artifactTopics } from "@kestrel/wire/artifacts";

const DEVICE_PUBLISHES = new Set(["telemetry", "state", "cmd/ack", "log", "artifact/get", "artifact/status"]);

export function mayPublish(deviceId: string, topic: string): boolean {
  const parsed = parseTopic(topic);
  return parsed !== undefined && parsed.deviceId === deviceId && DEVICE_PUBLISHES.has(parsed.kind);
}

/** A topic devices publish to, which therefore no client can subscribe to (see maySubscribe). */
export function isDeviceUplink(topic: string): boolean {
  const kind = parseTopic(topic)?.kind;
  return kind !== undefined && DEVICE_PUBLISHES.has(kind);
}

/**
 * Devices subscribe to their command, telemetry-ack, plugin-package, artifact offer and chunk topics
 * only, without wildcards.
 */
export function maySubscribe(deviceId: string, topicFilter: string): boolean {
  return (
    topicFilter === topics.command(deviceId) ||
    topicFilter === topics.telemetryAck(deviceId) ||
    topicFilter === topics.plugin(deviceId) ||
    topicFilter === artifactTopics.offer(deviceId) ||
    topicFilter === artifactTopics.chunk(deviceId)
  );
}
