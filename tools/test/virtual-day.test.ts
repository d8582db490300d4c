// A day of device time through the real gateway: one simulated device on a VirtualClock samples every
// 60 s for 24 virtual hours, and every sample (seq 0..1439) reaches the cloud's ingest API exactly
// once, in order, with the timestamps virtual time gives it, read back from the real cloud's history API
// (FerretDB underneath).

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startSimDevice, VirtualClock } from "@kestrel/firmware/sim";
import type { Gateway } from "@kestrel/gateway";
import type { RealCloud } from "../../gateway/test/real-cloud.ts";
import { cloudBehindGateway, until } from "./helpers.ts";

const DEVICE = "day-device";
const START = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
const INTERVAL = 60_000;

let platform: Awaited<ReturnType<typeof cloudBehindGateway>>;
let cloud: RealCloud;
let gateway: Gateway;
let dataDir: string;

before(async () => {
  platform = await cloudBehindGateway("virtual-day", [DEVICE]);
  ({ cloud, gateway, dataDir } = platform);
});

after(() => platform?.stop());

test("24 virtual hours through the gateway: every sample 0..1439 is stored in the cloud once, in order", async () => {
  const clock = new VirtualClock({ start: START });
  const device = await startSimDevice({
    deviceId: DEVICE,
    token: cloud.credentials.devices[0]?.token ?? "",
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
  const stored = () => cloud.rawHistory(DEVICE, { from: START, to: START + DAY + INTERVAL });
  const samples = await until(async () => {
    const found = await stored();
    return found.length >= 1440 ? found : undefined;
  }, "1440 samples");
  assert.deepEqual(
    samples.map((sample) => sample.seq),
    Array.from({ length: 1440 }, (_, seq) => seq),
  );
  assert.deepEqual(
    samples.map((sample) => sample.ts),
    Array.from({ length: 1440 }, (_, seq) => START + (seq + 1) * INTERVAL),
  );
});
