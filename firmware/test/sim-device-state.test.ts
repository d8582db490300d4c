// The device state a simulated device publishes is what a device reports: published at connect and
// then every stateIntervalMs, with uptime counted from the chip's start, the XS heap in use (the
// engine's meter, as the SDK's Instrumentation reports it) and the Wi-Fi RSSI of the board's model.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type DeviceState, validateDeviceState } from "@kestrel/wire";
import { startSimDevice, VirtualClock } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";

const START = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;
const DEVICE = "state-1";

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(new Map([[DEVICE, "token-state"]]));
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-state-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function states(deviceId: string): DeviceState[] {
  return broker.published
    .filter((m) => m.topic === `d/${deviceId}/state`)
    .map((m) => {
      const parsed = validateDeviceState(JSON.parse(m.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value;
    });
}

test("after 10 virtual minutes the state carries uptime ≈ 600 s, the XS heap in use and the Wi-Fi RSSI", async () => {
  const clock = new VirtualClock({ start: START });
  const device = await startSimDevice({
    deviceId: DEVICE,
    token: "token-state",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 10_000,
    wifiRssi: -67,
    clock,
  });
  try {
    await clock.runUntil(START + 10 * MINUTE + 1_000);
  } finally {
    await device.stop();
  }
  const online = states(DEVICE).filter((state) => state.online);
  // One at connect, then one a minute (stateIntervalMs 60,000 by default).
  assert.ok(online.length >= 10, `${online.length} state messages`);
  const last = online.at(-1) as DeviceState;
  assert.ok(last.uptime !== undefined && Math.abs(last.uptime - 600) <= 1, `uptime ${last.uptime}`);
  assert.ok(last.heap !== undefined && last.heap > 0, `heap ${last.heap}`);
  assert.equal(last.rssi, -67);
  const uptimes = online.map((state) => state.uptime ?? -1);
  assert.deepEqual(
    uptimes,
    [...uptimes].sort((a, b) => a - b),
    "uptime only grows",
  );
  assert.ok((online[0]?.uptime ?? -1) < 5, "the state at connect is published at once");
});
