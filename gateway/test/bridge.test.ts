// Bridge mode: devices connect to Debian's Mosquitto and the gateway is one client of it, with a
// persistent session. Telemetry and states reach the cloud, commands reach the device and its acks
// come back, telemetry acks reach the device through the broker, what devices publish while the
// gateway is away is delivered once it returns, and a message the gateway cannot queue gets no
// PUBACK, so the broker delivers it again later.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DeviceCommand } from "@kestrel/wire";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { type CommandPeer, startCommandPeer } from "./command-peer.ts";
import { type Mosquitto, startMosquitto } from "./mosquitto-broker.ts";
import { tempDir } from "./real-cloud.ts";
import { until } from "./until.ts";

const DEVICES = { "br-1": "token-br-1-secret" };

const batch = (seq: number) =>
  JSON.stringify({ v: 1, boot: 1, samples: [{ seq, ts: 1_764_000_000_000 + seq, m: { temperature: 20 + seq } }] });
/** 100 samples of 20 metrics: about 40 KB, so a few dozen fill the smallest queue allowed (1 MiB). */
const bigBatch = (boot: number) =>
  JSON.stringify({
    v: 1,
    boot,
    samples: Array.from({ length: 100 }, (_, seq) => ({
      seq,
      ts: 1_764_000_000_000 + seq,
      m: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`metric_${i}`, 1000.125 + i])),
    })),
  });

describe("bridge to an external broker", () => {
  let mosquitto: Mosquitto;
  let cloud: CommandPeer;
  let gateway: Gateway;
  let device: MqttClient;
  let dataDir: string;
  const commands: DeviceCommand[] = [];

  const startBridgeGateway = (env: Record<string, string> = {}) =>
    startGateway(
      loadGatewayConfig({
        ...env,
        EXTERNAL_BROKER_URL: `mqtt://127.0.0.1:${mosquitto.port}`,
        EXTERNAL_BROKER_CLIENT_ID: "kestrel-gateway-test",
        GATEWAY_HTTP_PORT: "0",
        CLOUD_URL: cloud.url,
        GATEWAY_KEY: cloud.gatewayKey,
        FORWARD_INTERVAL_MS: "20",
        GATEWAY_DATA_DIR: dataDir,
      }),
      pino({ level: process.env.TEST_LOG_LEVEL || "silent" }),
    );

  const storedSeqs = () =>
    cloud.ingests.flatMap((ingest) =>
      ingest.telemetry.filter((t) => t.deviceId === "br-1").flatMap((t) => t.batch.samples.map((s) => s.seq)),
    );

  before(async () => {
    dataDir = await tempDir("gateway-bridge");
    mosquitto = await startMosquitto(dataDir);
    cloud = await startCommandPeer(DEVICES);
    gateway = await startBridgeGateway();
    device = await connectAsync(`mqtt://127.0.0.1:${mosquitto.port}`, { clientId: "br-1", reconnectPeriod: 0 });
    device.on("message", (_topic, payload) => commands.push(JSON.parse(payload.toString()) as DeviceCommand));
  });

  after(async () => {
    await device?.endAsync(true);
    await gateway?.stop();
    await cloud?.close();
    await mosquitto?.stop();
  });

  test("telemetry and state published to Mosquitto reach the cloud through the gateway", async () => {
    assert.equal(gateway.mqttPort, undefined, "no embedded listener in bridge mode");
    await device.publishAsync("d/br-1/state", JSON.stringify({ v: 1, online: true }), { qos: 1 });
    for (const seq of [0, 1, 2]) await device.publishAsync("d/br-1/telemetry", batch(seq), { qos: 1 });
    await until(() => storedSeqs().length >= 3, "three batches in the cloud", 10_000);
    assert.deepEqual(storedSeqs(), [0, 1, 2]);
    assert.ok(cloud.ingests.some((ingest) => ingest.states.some((s) => s.deviceId === "br-1" && s.state.online)));
  });

  test("the ack of a telemetry batch reaches the device through the broker", async () => {
    // Another device, so br-1's stored sequence stays what the other tests expect.
    const acks: unknown[] = [];
    const other = await connectAsync(`mqtt://127.0.0.1:${mosquitto.port}`, { clientId: "br-2", reconnectPeriod: 0 });
    try {
      other.on("message", (_topic, payload) => acks.push(JSON.parse(payload.toString())));
      await other.subscribeAsync("d/br-2/telemetry/ack", { qos: 0 });
      await other.publishAsync("d/br-2/telemetry", batch(40), { qos: 1 });
      await until(() => acks.length > 0, "a telemetry ack", 10_000);
      assert.deepEqual(acks, [{ v: 1, boot: 1, seq: 40 }]);
    } finally {
      await other.endAsync();
    }
  });

  test("a command reaches a device that is online, and its ack reaches the cloud", async () => {
    await device.subscribeAsync("d/br-1/cmd", { qos: 1 });
    // The online state follows the subscription, as the firmware does it.
    await device.publishAsync("d/br-1/state", JSON.stringify({ v: 1, online: true }), { qos: 1 });
    await until(() => cloud.polls.some((devices) => devices.includes("br-1")), "a poll naming br-1", 10_000);
    cloud.queued.push({
      deviceId: "br-1",
      command: { v: 1, id: "cmd-br", name: "ping", expiresAt: Date.now() + 60_000 },
    });
    await until(() => commands.find((c) => c.id === "cmd-br"), "the command at the device", 10_000);
    await device.publishAsync("d/br-1/cmd/ack", JSON.stringify({ v: 1, id: "cmd-br", status: "done" }), { qos: 1 });
    await until(() => cloud.acks.find((a) => a.ack.id === "cmd-br"), "the ack in the cloud", 10_000);
  });

  test("what devices publish while the gateway is down waits in its session and arrives once", async () => {
    await gateway.stop();
    for (const seq of [3, 4, 5]) await device.publishAsync("d/br-1/telemetry", batch(seq), { qos: 1 });
    gateway = await startBridgeGateway();
    await until(() => storedSeqs().length >= 6, "the batches sent while the gateway was down", 10_000);
    assert.deepEqual(storedSeqs(), [0, 1, 2, 3, 4, 5]);
  });

  test("a message refused by a full queue is not acknowledged, and is taken once there is room", async () => {
    await gateway.stop();
    cloud.failIngestWith = 503;
    gateway = await startBridgeGateway({ QUEUE_MAX_BYTES: String(1024 * 1024) });
    const boots = Array.from({ length: 40 }, (_, i) => 100 + i);
    for (const boot of boots) await device.publishAsync("d/br-1/telemetry", bigBatch(boot), { qos: 1 });
    await until(
      async () => (await gateway.metrics.value("kestrel_gateway_queue_refused_total")) > 0,
      "a refused message",
      20_000,
    );
    cloud.failIngestWith = undefined;
    const storedBoots = () =>
      new Set(cloud.ingests.flatMap((ingest) => ingest.telemetry.map((t) => t.batch.boot)).filter((b) => b >= 100));
    await until(() => storedBoots().size === boots.length, "every big batch in the cloud", 30_000);
    assert.deepEqual(
      [...storedBoots()].sort((a, b) => a - b),
      boots,
    );
  });
});
