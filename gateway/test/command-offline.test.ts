// A command for a device that is offline stays queued in the cloud and reaches the device as soon
// as it is back: the gateway never publishes a command to a device that left (it hands it back),
// and hands back those published to a connection that closed before the device acked them.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DeviceCommand } from "@kestrel/wire";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { loadGatewayConfig } from "../src/config.ts";
import type { CommandChannel, RelayRecord } from "../src/downlink/command-channel.ts";
import { CommandRelay } from "../src/downlink/command-relay.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { GatewayMetrics } from "../src/metrics.ts";
import { DiskQueue } from "../src/uplink/disk-queue.ts";
import { RealCloud, tempDir } from "./real-cloud.ts";
import { until } from "./until.ts";

const silent = pino({ level: process.env.TEST_LOG ?? "silent" });

describe("commands for a device that went away", () => {
  test("a command the poll claimed for a device that left meanwhile is handed back, not published", async () => {
    let answerPoll: (commands: Array<{ deviceId: string; command: DeviceCommand }>) => void = () => undefined;
    const polled: string[][] = [];
    const relayed: RelayRecord[] = [];
    const channel = {
      poll: (devices: string[], _wait: number, signal: AbortSignal) => {
        polled.push(devices);
        return new Promise((resolve, reject) => {
          answerPoll = (commands) => resolve({ commands, invalid: 0 });
          signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
        });
      },
      sendAcks: async (items: RelayRecord[]) => {
        relayed.push(...items);
      },
    } as unknown as CommandChannel;
    const published: string[] = [];
    const { queue } = await DiskQueue.open({ dir: await tempDir("relay-acks"), maxBytes: 1024 * 1024 });
    const relay = new CommandRelay({
      channel,
      publish: async (deviceId) => {
        published.push(deviceId);
      },
      acks: queue,
      logger: silent,
      metrics: new GatewayMetrics(),
    });
    relay.start();
    try {
      relay.deviceReady("dev-a");
      await until(() => polled.length === 1, "the poll naming dev-a");
      const inFlight = answerPoll;
      relay.deviceGone("dev-a");
      // The cloud answers the poll that still named dev-a, before the relay could ask again.
      inFlight([{ deviceId: "dev-a", command: { v: 1, id: "c-1", name: "ping", expiresAt: Date.now() + 60_000 } }]);
      await until(() => relayed.length > 0, "the hand-back report");
      assert.deepEqual(published, [], "nothing is published to a device that left");
      assert.deepEqual(
        relayed.map((item) => ("delivery" in item ? item.delivery : undefined)),
        [{ id: "c-1", outcome: "not_connected" }],
      );
    } finally {
      await relay.stop();
    }
  });

  describe("with the real cloud", () => {
    let cloud: RealCloud;
    let gateway: Gateway;
    let token = "";
    const clients: MqttClient[] = [];

    before(async () => {
      cloud = await RealCloud.start(["dev-1"]);
      const login = await fetch(`${cloud.url}/api/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: cloud.credentials.admin.email, password: cloud.credentials.admin.password }),
      });
      token = ((await login.json()) as { token: string }).token;
      gateway = await startGateway(
        loadGatewayConfig({
          MQTT_PORT: "0",
          GATEWAY_HTTP_PORT: "0",
          CLOUD_URL: cloud.url,
          GATEWAY_KEY: cloud.credentials.gatewayKey,
          GATEWAY_DATA_DIR: await tempDir("gateway-offline-commands"),
        }),
        silent,
      );
    });
    after(async () => {
      for (const client of clients) await client.endAsync(true).catch(() => undefined);
      await gateway?.stop();
      await cloud?.stop();
    });

    const api = async (method: string, path: string, body?: object) => {
      const response = await fetch(`${cloud.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return (await response.json()) as { id: string; status: string; history: Array<{ status: string }> };
    };

    const connectDevice = async (received: DeviceCommand[]) => {
      const [device] = cloud.credentials.devices;
      assert.ok(device);
      const client = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
        clientId: device.deviceId,
        username: device.deviceId,
        password: device.token,
        reconnectPeriod: 0,
      });
      clients.push(client);
      client.on("message", (_topic, payload) => received.push(JSON.parse(payload.toString()) as DeviceCommand));
      // QoS 0, as Moddable's client subscribes.
      await client.subscribeAsync("d/dev-1/cmd", { qos: 0 });
      return client;
    };

    test("a command sent while the device is offline stays queued, and arrives as soon as it reconnects", async () => {
      const before: DeviceCommand[] = [];
      const first = await connectDevice(before);
      // Let the gateway's long poll name the device, as it does while the device is connected.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await first.endAsync();

      const sent = await api("POST", "/api/devices/dev-1/commands", { name: "ping" });
      // Long enough for a poll that still named the device to claim it, and the gateway to answer.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const meanwhile = await api("GET", `/api/devices/dev-1/commands/${sent.id}`);
      assert.equal(meanwhile.status, "queued", "nobody could receive it: it is not sent");
      assert.deepEqual(
        meanwhile.history.map((h) => h.status),
        ["queued"],
      );
      assert.deepEqual(before, []);

      const received: DeviceCommand[] = [];
      const reconnectedAt = Date.now();
      await connectDevice(received);
      // Well within the cloud's 60 s lease, after which the old gateway offered it again.
      await until(() => received.some((command) => command.id === sent.id), "the command on reconnect", 20_000);
      const delay = Date.now() - reconnectedAt;
      assert.ok(delay < 20_000, `arrived ${delay} ms after the reconnect`);
      await until(
        async () => (await api("GET", `/api/devices/dev-1/commands/${sent.id}`)).status === "sent",
        "the command to read sent once published",
      );
    });
  });
});
