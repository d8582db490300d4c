// The command relay: commands from the cloud reach the device's command topic at
// QoS 1, only devices listening are asked for, and acks go back with retries, even
// across a gateway killed with SIGKILL after it acknowledged them.

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { DeviceCommand } from "@kestrel/wire";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { type CommandPeer, startCommandPeer } from "./command-peer.ts";
import { freePort, GatewayProcess, tempDir } from "./real-cloud.ts";
import { until } from "./until.ts";

const DEVICES = { "dev-a": "token-a-secret", "dev-b": "token-b-secret" };

function command(id: string, name: DeviceCommand["name"] = "ping"): DeviceCommand {
  return { v: 1, id, name, expiresAt: Date.now() + 60_000 };
}

describe("command relay", () => {
  let cloud: CommandPeer;
  let gateway: Gateway;
  const clients: MqttClient[] = [];
  const received: Array<{ topic: string; payload: unknown; qos: number }> = [];

  const device = async (id: keyof typeof DEVICES) => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
      clientId: id,
      username: id,
      password: DEVICES[id],
      reconnectPeriod: 0,
    });
    clients.push(client);
    client.on("message", (topic, payload, packet) =>
      received.push({ topic, payload: JSON.parse(payload.toString()), qos: packet.qos }),
    );
    return client;
  };

  before(async () => {
    cloud = await startCommandPeer(DEVICES);
    const config = loadGatewayConfig({
      MQTT_PORT: "0",
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      CLOUD_TIMEOUT_MS: "2000",
      GATEWAY_DATA_DIR: await mkdtemp(join(tmpdir(), "kestrel-gateway-downlink-")),
    });
    gateway = await startGateway(config, pino({ level: "silent" }));
  });

  after(async () => {
    for (const client of clients) await client.endAsync(true).catch(() => undefined);
    await gateway.stop();
    await cloud.close();
  });

  test("a command reaches the device's topic at QoS 1 and its acks reach the cloud", async () => {
    const client = await device("dev-a");
    await client.subscribeAsync("d/dev-a/cmd", { qos: 1 });
    await until(() => cloud.polls.some((devices) => devices.includes("dev-a")), "a poll naming dev-a", 10_000);
    const sent = { ...command("cmd-1", "set-config"), params: { interval_s: 30 } };
    cloud.queued.push({ deviceId: "dev-a", command: sent });

    const delivered = await until(() => received.find((m) => m.topic === "d/dev-a/cmd"), "the command", 10_000);
    assert.deepEqual(delivered, { topic: "d/dev-a/cmd", payload: sent, qos: 1 });

    const before = Date.now();
    await client.publishAsync("d/dev-a/cmd/ack", JSON.stringify({ v: 1, id: "cmd-1", status: "accepted" }), { qos: 1 });
    await client.publishAsync("d/dev-a/cmd/ack", JSON.stringify({ v: 1, id: "cmd-1", status: "done" }), { qos: 1 });
    await until(() => cloud.acks.length >= 2, "both acks relayed", 10_000);
    assert.deepEqual(
      cloud.acks.map(({ deviceId, ack }) => ({ deviceId, ack })),
      [
        { deviceId: "dev-a", ack: { v: 1, id: "cmd-1", status: "accepted" } },
        { deviceId: "dev-a", ack: { v: 1, id: "cmd-1", status: "done" } },
      ],
    );
    for (const { receivedAt } of cloud.acks) assert.ok(receivedAt >= before && receivedAt <= Date.now());
    assert.match(await gateway.metrics.render(), /kestrel_gateway_commands_published_total 1\b/);
  });

  test("only devices listening on their command topic are polled for", async () => {
    await device("dev-b");
    cloud.queued.push({ deviceId: "dev-b", command: command("cmd-b") });
    cloud.queued.push({ deviceId: "dev-a", command: command("cmd-2") });
    await until(() => received.find((m) => (m.payload as DeviceCommand).id === "cmd-2"), "dev-a's command", 10_000);
    assert.ok(!cloud.polls.some((devices) => devices.includes("dev-b")));
    assert.deepEqual(
      cloud.queued.map((item) => item.command.id),
      ["cmd-b"],
      "dev-b's command stays queued in the cloud",
    );
  });

  test("a malformed ack is dropped and counted, never relayed", async () => {
    const [client] = clients;
    assert.ok(client);
    const relayed = cloud.acks.length;
    await client.publishAsync("d/dev-a/cmd/ack", JSON.stringify({ v: 1, id: "cmd-1", status: "finished" }), {
      qos: 1,
    });
    await client.publishAsync("d/dev-a/cmd/ack", JSON.stringify({ v: 1, id: "cmd-2", status: "done" }), { qos: 1 });
    await until(() => cloud.acks.length > relayed, "the valid ack", 10_000);
    assert.deepEqual(
      cloud.acks.slice(relayed).map((a) => a.ack.id),
      ["cmd-2"],
    );
    assert.match(await gateway.metrics.render(), /kestrel_gateway_messages_rejected_total\{reason="invalid_ack"\} 1\b/);
  });

  test("acks are retried while the cloud refuses them, and none is lost", async () => {
    const [client] = clients;
    assert.ok(client);
    const relayed = cloud.acks.length;
    const attempts = cloud.ackAttempts;
    cloud.failAcksWith = 503;
    await client.publishAsync("d/dev-a/cmd/ack", JSON.stringify({ v: 1, id: "cmd-3", status: "failed", reason: "x" }), {
      qos: 1,
    });
    await until(() => cloud.ackAttempts > attempts, "a refused attempt", 10_000);
    assert.equal(cloud.acks.length, relayed);
    cloud.failAcksWith = undefined;
    await until(() => cloud.acks.length > relayed, "the ack after the outage", 10_000);
    assert.deepEqual(cloud.acks[relayed]?.ack, { v: 1, id: "cmd-3", status: "failed", reason: "x" });
    assert.match(await gateway.metrics.render(), /kestrel_gateway_downlink_failures_total\{operation="ack"\} [1-9]/);
  });
});

describe("durable command acks", () => {
  test("acks the gateway acknowledged survive a SIGKILL before the cloud took them", async (t) => {
    const cloud = await startCommandPeer(DEVICES);
    t.after(() => cloud.close());
    const mqttPort = await freePort();
    const gateway = new GatewayProcess({
      MQTT_PORT: String(mqttPort),
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      GATEWAY_DATA_DIR: await tempDir("gateway-acks"),
    });
    t.after(() => gateway.kill("SIGKILL"));
    await gateway.start();
    cloud.failAcksWith = 503;
    const client = await connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: "dev-a",
      username: "dev-a",
      password: DEVICES["dev-a"],
      reconnectPeriod: 0,
    });
    const acks = [
      { v: 1, id: "cmd-k", status: "accepted" },
      { v: 1, id: "cmd-k", status: "done" },
    ];
    for (const ack of acks) await client.publishAsync("d/dev-a/cmd/ack", JSON.stringify(ack), { qos: 1 });
    await until(() => cloud.ackAttempts > 0, "a refused attempt", 10_000);
    await gateway.kill("SIGKILL");
    await client.endAsync(true);
    assert.equal(cloud.acks.length, 0);

    cloud.failAcksWith = undefined;
    await gateway.start();
    await until(() => cloud.acks.length >= 2, "the acks after the restart", 10_000);
    assert.deepEqual(
      cloud.acks.map(({ deviceId, ack }) => ({ deviceId, ack })),
      acks.map((ack) => ({ deviceId: "dev-a", ack })),
    );
  });
});
