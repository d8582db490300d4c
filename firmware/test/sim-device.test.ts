// A simulated device boots the compiled firmware in XS, reads the BMP280 model over simulated I2C
// and publishes over a real MQTT connection to a broker started here.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type TelemetryBatch, type TelemetrySample, validateDeviceState, validateTelemetryBatch } from "@kestrel/wire";
import { type Bmp280Conversion, RealTimeClock, startSimDevice } from "../sim/index.ts";
import { firstArrivals } from "./arrivals.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";
import { waitUntil } from "./wait.ts";

/** What the driver's integer compensation (64-bit variant) guarantees against the float formula. */
const TEMPERATURE_TOLERANCE = 0.01;
const PRESSURE_TOLERANCE = 1;
const SLOT_BYTES_HOST = 32;
const SLOT_BYTES_ESP32 = 16;

const TOKENS = new Map([
  ["sim-a", "token-a"],
  ["sim-b", "token-b"],
  ["sim-c", "token-c"],
  ["sim-d", "token-d"],
  ["sim-e", "token-e"],
]);

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-sim-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function batchesOf(deviceId: string): TelemetryBatch[] {
  return broker.published
    .filter((message) => message.topic === `d/${deviceId}/telemetry`)
    .map((message) => {
      const parsed = validateTelemetryBatch(JSON.parse(message.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value;
    });
}

/** Every reading from deviceId once (a batch in flight when the link dropped is sent again). */
function samplesOf(deviceId: string): TelemetrySample[] {
  const delivered = batchesOf(deviceId).flatMap((batch) => batch.samples.map((s) => ({ ...s, boot: batch.boot })));
  return firstArrivals(delivered).map(({ boot: _boot, ...sample }) => sample);
}

async function waitForSamples(deviceId: string, count: number): Promise<TelemetrySample[]> {
  await waitUntil(() => samplesOf(deviceId).length >= count, `${count} samples from ${deviceId}`, 15_000);
  return samplesOf(deviceId);
}

function assertMatchesModel(samples: TelemetrySample[], served: Bmp280Conversion[]): void {
  samples.forEach((sample, index) => {
    assert.equal(sample.seq, index, "seq is contiguous from 0");
    const conversion = served[index];
    assert.ok(conversion, `the model served conversion ${index}`);
    const { temperature, pressure } = sample.m;
    assert.ok(temperature !== undefined && pressure !== undefined);
    assert.ok(
      Math.abs(temperature - conversion.temperature) <= TEMPERATURE_TOLERANCE,
      `temperature ${index}: ${temperature} vs ${conversion.temperature}`,
    );
    assert.ok(
      Math.abs(pressure - conversion.pressure) <= PRESSURE_TOLERANCE,
      `pressure ${index}: ${pressure} vs ${conversion.pressure}`,
    );
  });
}

test("publishes a retained online state and telemetry batches that match the served conversions", async (t) => {
  const { logger } = captureLogs();
  const device = await startSimDevice({
    deviceId: "sim-a",
    token: "token-a",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 50,
    samplesPerBatch: 4,
    logger,
  });
  t.after(() => device.stop());
  const booted = device.meters();
  const kib = (slots: number, bytes: number): string => ((slots * bytes) / 1024).toFixed(0);
  t.diagnostic(
    `XS meters after boot: ${booted.heapSlots} heap slots (${kib(booted.heapSlots, SLOT_BYTES_HOST)} KiB on this ` +
      `64-bit host, ~${kib(booted.heapSlots, SLOT_BYTES_ESP32)} KiB at 16 bytes per slot on an ESP32), ` +
      `${booted.compute} computrons; the count includes the XS intrinsics and the simulator runtime`,
  );
  assert.ok(booted.heapSlots > 0);

  await device.connected;
  const stateMessage = await broker.waitFor((m) => m.topic === "d/sim-a/state" && m.clientId === "sim-a");
  assert.equal(stateMessage.retain, true);
  assert.equal(stateMessage.qos, 1);
  const state = validateDeviceState(JSON.parse(stateMessage.payload));
  assert.ok(state.ok);
  assert.equal(state.value.online, true);
  assert.equal(state.value.boot, 1);
  assert.equal(state.value.fw, "0.1.0");
  assert.equal(state.value.reset, "power-on");

  const samples = await waitForSamples("sim-a", 12);
  const batches = broker.published.filter((m) => m.topic === "d/sim-a/telemetry");
  assert.ok(batches.every((m) => m.qos === 1 && !m.retain));
  assert.ok(batchesOf("sim-a").every((batch) => batch.samples.length === 4));
  assertMatchesModel(samples, device.bmp280.served);
  const boots = batches.map((m) => (JSON.parse(m.payload) as { boot: number }).boot);
  assert.deepEqual(new Set(boots), new Set([1]));
  const now = Date.now();
  assert.ok(samples.every((sample) => sample.ts <= now && sample.ts > now - 60_000));
  t.diagnostic(`XS heap while running: ${device.meters().heapSlots} slots`);
});

test("counts boots across restarts and leaves a retained offline will when powered off", async () => {
  const options = {
    deviceId: "sim-b",
    token: "token-b",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 50,
    samplesPerBatch: 2,
  };
  const first = await startSimDevice(options);
  await first.connected;
  await waitForSamples("sim-b", 2);
  await first.stop();
  // Power-off drops the socket without DISCONNECT, so the broker publishes the registered will.
  const will = await broker.waitFor((m) => m.topic === "d/sim-b/state" && m.payload.includes('"online":false'));
  assert.deepEqual(JSON.parse(will.payload), { v: 1, online: false });
  assert.equal(will.retain, true);

  const second = await startSimDevice(options);
  try {
    const state = await broker.waitFor((m) => m.topic === "d/sim-b/state" && m.payload.includes('"boot":2'));
    assert.equal(JSON.parse(state.payload).online, true);
    const batch = await broker.waitFor((m) => m.topic === "d/sim-b/telemetry" && m.payload.includes('"boot":2'));
    const parsed = validateTelemetryBatch(JSON.parse(batch.payload));
    assert.ok(parsed.ok);
    assert.equal(parsed.value.samples[0]?.seq, 0, "seq restarts at 0 with every boot");
  } finally {
    await second.stop();
  }
});

test("keeps batches while the broker connection is down and delivers them, in order, after reconnecting", async (t) => {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId: "sim-c",
    token: "token-c",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 40,
    samplesPerBatch: 2,
    logger,
  });
  t.after(() => device.stop());
  await device.connected;
  await waitForSamples("sim-c", 2);
  const onlineStates = (): number =>
    broker.published.filter((m) => m.topic === "d/sim-c/state" && m.clientId === "sim-c").length;
  assert.equal(onlineStates(), 1);
  broker.disconnect("sim-c");
  await waitUntil(() => onlineStates() === 2, "the state published after reconnecting");
  const samples = await waitForSamples("sim-c", 40);
  assertMatchesModel(samples, device.bmp280.served);
  const messages = entries.map((entry) => entry.msg);
  assert.ok(messages.includes("mqtt connection closed"));
  assert.ok(messages.includes("mqtt reconnect scheduled"));
  const reconnected = entries.filter((entry) => entry.msg === "mqtt connected").at(-1);
  assert.ok((reconnected?.fields.queued as number) > 0, "batches were queued while offline");
});

test("a device with a wrong token is refused, keeps retrying, and publishes nothing", async () => {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({ deviceId: "sim-x", token: "wrong", mqttUrl: broker.url, stateDir, logger });
  try {
    await waitUntil(
      () => entries.filter((entry) => entry.msg === "mqtt reconnect scheduled").length >= 2,
      "a second reconnect attempt",
    );
    assert.ok(entries.some((entry) => entry.level === "warn" && entry.msg === "simulated mqtt connection error"));
    assert.equal(broker.published.filter((m) => m.clientId === "sim-x").length, 0);
  } finally {
    await device.stop();
  }
});

test("skips readings while the sensor is unpowered and resumes, seq contiguous, once it is back", async (t) => {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId: "sim-d",
    token: "token-d",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 30,
    samplesPerBatch: 2,
    logger,
  });
  t.after(() => device.stop());
  await waitForSamples("sim-d", 4);
  device.bmp280.setPowered(false);
  await waitUntil(
    () => entries.some((entry) => entry.msg === "bmp280 closed after failed reads, probing it again"),
    "the app to close the sensor and probe it again",
  );
  const servedWhileOff = device.bmp280.served.length;
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(device.bmp280.served.length, servedWhileOff, "nothing is read while the sensor is off");
  device.bmp280.setPowered(true);
  await waitUntil(
    () => entries.filter((entry) => entry.msg === "bmp280 ready").length === 2,
    "the sensor to be reopened",
  );
  const samples = await waitForSamples("sim-d", servedWhileOff + 6);
  assertMatchesModel(samples, device.bmp280.served);
  const failure = entries.find((entry) => entry.msg === "bmp280 read failed");
  assert.match(String(failure?.fields.error), /no ACK from address 0x76/);
});

test("discards readings while the device clock is unset (before SNTP) instead of sending 1970 timestamps", async () => {
  // The clock reads one second after the epoch, as an ESP32's does before SNTP.
  const real = new RealTimeClock();
  const offset = 1_000 - Date.now();
  const unsetClock = {
    now: () => real.now() + offset,
    setAlarm: (at: number, fn: () => void) => real.setAlarm(at - offset, fn),
    sleep: (ms: number) => real.sleep(ms),
  };
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId: "sim-e",
    token: TOKENS.get("sim-e") ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 50,
    samplesPerBatch: 1,
    clock: unsetClock,
    logger,
  });
  try {
    await device.connected;
    await waitUntil(() => device.bmp280.served.length >= 5, "five sensor reads");
    assert.ok(entries.some((entry) => entry.msg === "clock not set yet, reading discarded"));
    assert.equal(broker.published.filter((m) => m.topic === "d/sim-e/telemetry").length, 0);
  } finally {
    await device.stop();
  }
});
