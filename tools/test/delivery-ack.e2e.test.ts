// Nothing lost when the link fails right after a publish: a simulated device (the real firmware in XS,
// on virtual time) publishes through the real gateway to the real cloud (FerretDB underneath) while
// its link drops three times just after the firmware handed a telemetry batch to its MQTT client,
// which never reached the gateway. The batch stays in the device's flash ring until the gateway's
// telemetry ack confirms it, so every reading is in the cloud's history exactly once, in order.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startSimDevice, VirtualClock } from "@kestrel/firmware/sim";
import type { Gateway } from "@kestrel/gateway";
import type { RealCloud } from "../../gateway/test/real-cloud.ts";
import { cloudBehindGateway, until } from "./helpers.ts";

const DEVICE = "ack-device";
const START = Date.UTC(2026, 0, 1);
const INTERVAL = 1_000;
const SAMPLES_PER_BATCH = 5;
/** Device time run; a batch completes every 5 s, so 120 readings in 24 batches. */
const RUN = 120_000;
const DROPS_AT = [12_000, 41_000, 77_000];

let platform: Awaited<ReturnType<typeof cloudBehindGateway>>;
let cloud: RealCloud;
let gateway: Gateway;
let dataDir: string;

before(async () => {
  platform = await cloudBehindGateway("delivery-ack", [DEVICE]);
  ({ cloud, gateway, dataDir } = platform);
});

after(() => platform?.stop());

test("links dropped right after a telemetry publish: every reading reaches the cloud once, in order", async () => {
  const clock = new VirtualClock({ start: START });
  const device = await startSimDevice({
    deviceId: DEVICE,
    token: cloud.credentials.devices[0]?.token ?? "",
    mqttUrl: `mqtt://127.0.0.1:${gateway.mqttPort}`,
    stateDir: join(dataDir, "device"),
    sampleIntervalMs: INTERVAL,
    samplesPerBatch: SAMPLES_PER_BATCH,
    seed: 7,
    clock,
  });
  const connections = async () => await gateway.metrics.value("kestrel_gateway_connections_total", { auth: "token" });
  try {
    for (const at of DROPS_AT) {
      await clock.runUntil(START + at);
      device.faults.dropLinkAfterPublish();
    }
    await clock.runUntil(START + RUN + INTERVAL / 2);
  } finally {
    await device.stop();
  }
  assert.equal(await connections(), 1 + DROPS_AT.length, "the link dropped after each armed publish and came back");
  // Everything the gateway took is delivered before the history is read (the cloud applies its
  // journal before answering a read).
  await until(async () => (gateway.forwarder.depth === 0 ? true : undefined), "the gateway's queue drained");
  await gateway.forwarder.flush();
  const stored = await cloud.rawHistory(DEVICE, { from: START, to: START + RUN + INTERVAL });
  const readings = RUN / INTERVAL;
  const seqs = new Set(stored.map((sample) => sample.seq));
  const lost = Array.from({ length: readings }, (_, seq) => seq).filter((seq) => !seqs.has(seq));
  assert.deepEqual(lost, [], "readings lost with the link");
  assert.deepEqual(
    stored.map((sample) => sample.seq),
    Array.from({ length: readings }, (_, seq) => seq),
  );
  assert.deepEqual(
    stored.map((sample) => sample.ts),
    Array.from({ length: readings }, (_, seq) => START + (seq + 1) * INTERVAL),
  );
});
