// The watchdog, reset reasons and boot-loop safe mode, with the firmware running in XS: a hung
// sampling task reboots the device with reset reason "watchdog", repeated abnormal resets put it in
// safe mode (no sampling), and a clean run or a reboot command leaves it.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type DeviceState, validateDeviceState, validateTelemetryBatch } from "@kestrel/wire";
import { FastClock, type SimDevice, startSimDevice } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { type CapturedLog, captureLogs } from "./log-capture.ts";
import { waitUntil } from "./wait.ts";

const DEVICES = ["wd-hang", "wd-spin", "wd-loop", "wd-command"];
const TOKENS = new Map(DEVICES.map((id) => [id, `token-${id}`]));
/** The shortest the settings allow, so a hang is caught within about a second of device time. */
const WATCHDOG = { watchdogTimeoutMs: 1_000 };

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-watchdog-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function statesOf(deviceId: string): DeviceState[] {
  return broker.published
    .filter((message) => message.topic === `d/${deviceId}/state`)
    .map((message) => {
      const parsed = validateDeviceState(JSON.parse(message.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value;
    })
    .filter((state) => state.online);
}

function telemetryBoots(deviceId: string): number[] {
  return broker.published
    .filter((message) => message.topic === `d/${deviceId}/telemetry`)
    .map((message) => {
      const parsed = validateTelemetryBatch(JSON.parse(message.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value.boot;
    });
}

async function waitForState(deviceId: string, match: (state: DeviceState) => boolean, what: string) {
  await waitUntil(() => statesOf(deviceId).some(match), what, 20_000);
  return statesOf(deviceId).find(match) as DeviceState;
}

async function boot(
  deviceId: string,
  t: { after(fn: () => Promise<void>): void },
  settings: Record<string, number>,
  clock?: FastClock,
): Promise<{ device: SimDevice; entries: CapturedLog[] }> {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 100,
    samplesPerBatch: 1,
    settings,
    logger,
    clock,
  });
  t.after(() => device.stop());
  return { device, entries };
}

test("a hung sampling task makes the watchdog reboot the device, which then reports reset watchdog", async (t) => {
  const { device, entries } = await boot("wd-hang", t, WATCHDOG);
  const first = await waitForState("wd-hang", (state) => state.boot === 1, "the first boot's state");
  assert.equal(first.reset, "power-on");
  assert.equal(first.mode, "normal");
  await waitUntil(() => telemetryBoots("wd-hang").includes(1), "telemetry from the first boot");

  device.hang("sampling");
  const after = await waitForState("wd-hang", (state) => state.boot === 2, "the state after the watchdog reboot");
  assert.equal(after.reset, "watchdog");
  assert.equal(after.mode, "normal");
  assert.equal(device.restarts, 1);
  const expired = entries.find((entry) => entry.msg === "watchdog: subsystem stopped beating, restarting");
  assert.equal(expired?.fields.subsystem, "sampling");
  assert.ok(Number(expired?.fields.silentMs) > WATCHDOG.watchdogTimeoutMs);
  // The hang ended with the reset: sampling runs again.
  await waitUntil(() => telemetryBoots("wd-hang").includes(2), "telemetry after the reboot");
});

test("a task spinning forever blocks the main loop, and the hardware watchdog resets the chip", async (t) => {
  const { device, entries } = await boot("wd-spin", t, WATCHDOG);
  await waitForState("wd-spin", (state) => state.boot === 1, "the first boot's state");
  device.hang("sampling", { spin: true });
  const after = await waitForState("wd-spin", (state) => state.boot === 2, "the state after the reset");
  assert.equal(after.reset, "watchdog", "the chip reports a task watchdog reset");
  assert.equal(device.restarts, 1);
  assert.ok(
    !entries.some((entry) => entry.msg?.startsWith("watchdog:")),
    "the software watchdog never ran: the main loop was blocked",
  );
  await waitUntil(() => telemetryBoots("wd-spin").includes(2), "telemetry after the reset");
});

test("a boot loop enters safe mode without sampling, and a clean run leaves it", async (t) => {
  // Ten times faster than real time, so the clean-run window (10 s of device time) passes in about a second.
  const clock = new FastClock(10);
  const { device, entries } = await boot(
    "wd-loop",
    t,
    { ...WATCHDOG, safeModeAfterResets: 3, safeModeWindowMs: 10_000 },
    clock,
  );
  device.hang("sampling", { acrossResets: true });
  const safe = await waitForState("wd-loop", (state) => state.mode === "safe", "safe mode");
  assert.equal(safe.boot, 4, "power-on, then three watchdog resets in a row");
  assert.equal(safe.reset, "watchdog");
  assert.equal(device.restarts, 3);
  assert.ok(
    entries.some((entry) => entry.msg?.startsWith("boot loop: safe mode") && entry.fields.abnormalResets === 3),
  );
  // Device time runs fast here, so a boot may reset before it gets to publish its state: its log says it all.
  const boots = entries.filter((entry) => entry.msg === "boot").map((entry) => [entry.fields.boot, entry.fields.reset]);
  assert.deepEqual(boots, [
    [1, "power-on"],
    [2, "watchdog"],
    [3, "watchdog"],
    [4, "watchdog"],
  ]);
  assert.equal(entries.filter((entry) => entry.msg?.startsWith("boot loop")).length, 1, "safe mode at the third only");

  // After a clean window in safe mode sampling starts again; the hang is still there, so the
  // watchdog resets once more, but the forgiven count makes it a normal boot.
  const resumed = await waitForState(
    "wd-loop",
    (state) => state.boot === 4 && state.mode === "normal",
    "safe mode left after a clean run",
  );
  assert.equal(resumed.reset, "watchdog");
  assert.ok(entries.some((entry) => entry.msg === "leaving safe mode after a clean run"));
  await waitUntil(() => entries.some((entry) => entry.msg === "boot" && entry.fields.boot === 5), "the next boot");
  assert.equal(entries.find((entry) => entry.msg === "boot" && entry.fields.boot === 5)?.fields.reset, "watchdog");
  assert.ok(
    !entries.some((entry) => entry.msg?.startsWith("boot loop") && entry.fields.boot === 5),
    "the count started again: one abnormal reset is no boot loop",
  );
});

test("a reboot command leaves safe mode", async (t) => {
  const { device } = await boot("wd-command", t, { ...WATCHDOG, safeModeAfterResets: 2, safeModeWindowMs: 600_000 });
  device.hang("sampling", { acrossResets: true });
  const safe = await waitForState("wd-command", (state) => state.mode === "safe", "safe mode");
  assert.equal(safe.boot, 3);
  // Safe mode samples nothing, so the hung sampling task no longer resets the device.
  await new Promise((resolve) => setTimeout(resolve, 2 * WATCHDOG.watchdogTimeoutMs));
  assert.equal(device.restarts, 2);
  assert.ok(!telemetryBoots("wd-command").includes(3), "no telemetry in safe mode");

  await broker.waitForSubscription("wd-command", "d/wd-command/cmd");
  await broker.publish("d/wd-command/cmd", JSON.stringify({ v: 1, id: "leave-safe", name: "reboot" }));
  const rebooted = await waitForState("wd-command", (state) => state.boot === 4, "the boot after the command");
  assert.equal(rebooted.reset, "command");
  assert.equal(rebooted.mode, "normal");
});
