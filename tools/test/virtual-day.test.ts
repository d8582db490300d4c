// A day of device time through the real gateway: one simulated device on a VirtualClock samples every
// 60 s for 24 virtual hours, and every sample (seq 0..1439) reaches the cloud's ingest API exactly
// once, in order, with the timestamps virtual time gives it. The cloud is the gateway tests' stand-in,
// which records what the gateway forwards.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startSimDevice, VirtualClock } from "@kestrel/firmware/sim";
import { type Gateway, loadGatewayConfig, startGateway } from "@kestrel/gateway";
import type { TelemetrySample } from "@kestrel/wire";
import { type CloudPeer, startCloudPeer } from "../../gateway/test/cloud-peer.ts";
import { silent, tempDir, until } from "./helpers.ts";

const DEVICE = "day-device";
const TOKEN = "day-device-token-0123456789";
const START = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
const INTERVAL = 60_000;

let cloud: CloudPeer;
let gateway: Gateway;
let dataDir: string;

before(async () => {
  dataDir = await tempDir("virtual-day");
  cloud = await startCloudPeer({ [DEVICE]: TOKEN });
  gateway = await startGateway(
    loadGatewayConfig({
      MQTT_PORT: "0",
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      GATEWAY_DATA_DIR: join(dataDir, "gateway"),
    }),
    silent,
  );
});

after(async () => {
  await gateway.stop();
  await cloud.close();
});

function forwarded(): TelemetrySample[] {
  return cloud.ingests.flatMap((ingest) =>
    ingest.telemetry.filter((entry) => entry.deviceId === DEVICE).flatMap((entry) => entry.batch.samples),
  );
}

test("24 virtual hours through the gateway: every sample 0..1439 is forwarded once, in order", async () => {
  const clock = new VirtualClock({ start: START });
  const device = await startSimDevice({
    deviceId: DEVICE,
    token: TOKEN,
    mqttUrl: `mqtt://127.0.0.1:${gateway.mqttPort}`,
    stateDir: join(dataDir, "device"),
    sampleIntervalMs: INTERVAL,
    samplesPerBatch: 10,
    seed: 1,
    clock,
  });
  try {
    await clock.runUntil(START + DAY + INTERVAL / 2);
  } finally {
    await device.stop();
  }
  // The gateway forwards from its durable queue on its own schedule, in real time.
  const samples = await until(async () => (forwarded().length >= 1440 ? forwarded() : undefined), "1440 samples");
  assert.deepEqual(
    samples.map((sample) => sample.seq),
    Array.from({ length: 1440 }, (_, seq) => seq),
  );
  assert.deepEqual(
    samples.map((sample) => sample.ts),
    Array.from({ length: 1440 }, (_, seq) => START + (seq + 1) * INTERVAL),
  );
});
