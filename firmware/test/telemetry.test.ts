// Batching samples into TelemetryBatch payloads and reading the device settings.

import assert from "node:assert/strict";
import { test } from "node:test";
import { LIMITS, parseTelemetryBatch } from "@kestrel/wire";
import { FLASH_SECTOR_BYTES } from "../sim/flash.ts";
import { MAX_SAMPLES_PER_BATCH, readSettings } from "../src/settings.ts";
import TelemetryBatcher, { batchBoot, batchLastSeq, samplesPerBatchFor } from "../src/telemetry.ts";

const TS = Date.UTC(2026, 0, 1);

test("emits a valid TelemetryBatch every samplesPerBatch samples", () => {
  const batcher = new TelemetryBatcher(7, 3, ["temperature", "pressure"]);
  assert.equal(batcher.add(0, TS, Float64Array.of(21.5, 100653.25)), undefined);
  assert.equal(batcher.add(1, TS + 1000, Float64Array.of(21.51, 100653.5)), undefined);
  const text = batcher.add(2, TS + 2000, Float64Array.of(21.52, 100654));
  assert.ok(text);
  const batch = parseTelemetryBatch(text);
  assert.ok(batch.ok);
  assert.equal(batch.value.boot, 7);
  assert.deepEqual(
    batch.value.samples.map((s) => [s.seq, s.ts, s.m.temperature, s.m.pressure]),
    [
      [0, TS, 21.5, 100653.25],
      [1, TS + 1000, 21.51, 100653.5],
      [2, TS + 2000, 21.52, 100654],
    ],
  );
  assert.equal(batcher.pending, 0);
  assert.equal(batcher.take(), undefined);
});

test("a serialized batch's boot and last seq, which its ack names, are read back from the text", () => {
  const batcher = new TelemetryBatcher(4_000_000_000, 2, ["temperature", "seq_count"]);
  batcher.add(4_294_967_294, TS, Float64Array.of(21.5, 17));
  const text = batcher.add(4_294_967_295, TS + 1000, Float64Array.of(21.75, 18));
  assert.ok(text);
  assert.equal(batchBoot(text), 4_000_000_000);
  assert.equal(batchLastSeq(text), 4_294_967_295);
});

test("take() serializes a partial batch", () => {
  const batcher = new TelemetryBatcher(1, 5, ["temperature", "pressure"]);
  batcher.add(0, TS, Float64Array.of(20, 100000));
  const batch = parseTelemetryBatch(batcher.take() ?? "");
  assert.ok(batch.ok);
  assert.equal(batch.value.samples.length, 1);
});

test("refuses batch sizes the wire contract does not allow", () => {
  assert.throws(() => new TelemetryBatcher(1, 0, ["temperature"]), /samplesPerBatch must be 1\.\./);
  assert.throws(() => new TelemetryBatcher(1, LIMITS.samplesPerBatch + 1, ["temperature"]), /samplesPerBatch/);
  assert.throws(() => new TelemetryBatcher(1, 5, []), /1\.\.32 metrics/);
});

const CONFIG = {
  deviceId: "dev-1",
  token: "t",
  mqttHost: "127.0.0.1",
  mqttPort: 1883,
  mqttTls: 0,
  sda: 21,
  scl: 22,
  bmp280Address: 0x76,
  sampleIntervalMs: 1000,
  samplesPerBatch: 5,
  flashPartition: "kestrel",
  ledPin: 2,
  logPartition: "klog",
  watchdogTimeoutMs: 30_000,
  safeModeAfterResets: 3,
  safeModeWindowMs: 600_000,
};

test("reads the settings, accepting mcconfig's string values for numbers", () => {
  const settings = readSettings({ ...CONFIG, mqttPort: "1884", samplesPerBatch: "10" });
  assert.equal(settings.mqttPort, 1884);
  assert.equal(settings.samplesPerBatch, 10);
  assert.equal(settings.deviceId, "dev-1");
});

test("names the setting that is wrong", () => {
  assert.throws(
    () => readSettings({ ...CONFIG, deviceId: "no spaces" }),
    /deviceId "no spaces" is not a valid device id/,
  );
  assert.throws(() => readSettings({ ...CONFIG, mqttPort: "x" }), /mqttPort must be an integer 1\.\.65535, got "x"/);
  assert.throws(() => readSettings({ ...CONFIG, token: "" }), /token must be a non-empty string/);
  assert.throws(() => readSettings({ ...CONFIG, mqttTls: "1" }), /mqttTls needs mqttCa/);
  assert.throws(
    () => readSettings({ ...CONFIG, mqttTls: 1, mqttCa: "ca.der", mqttClientCert: "dev.der" }),
    /mqttClientCert and mqttClientKey go together/,
  );
  assert.throws(() => readSettings({ ...CONFIG, samplesPerBatch: 46 }), /samplesPerBatch must be an integer 1\.\.45/);
});

test("the largest batch a device may build fits the ESP32's 8 KB TCP send buffer and one flash sector", () => {
  const batcher = new TelemetryBatcher(0xffffffff, MAX_SAMPLES_PER_BATCH, ["temperature", "pressure"]);
  let text: string | undefined;
  // Widest values: a huge seq, a far timestamp, negative fractional temperature, long pressure.
  for (let i = 0; i < MAX_SAMPLES_PER_BATCH; i++) {
    text = batcher.add(0xffffffff - MAX_SAMPLES_PER_BATCH + i, 4_102_444_799_999, Float64Array.of(-39.99, 109_999.99));
  }
  assert.ok(text);
  assert.ok(text.length <= FLASH_SECTOR_BYTES - 12, `worst-case batch is ${text.length} bytes`);
  assert.ok(parseTelemetryBatch(text).ok);
});

test("samples with empty metrics leave them out; many metrics shrink the batch to fit a flash sector", () => {
  const batcher = new TelemetryBatcher(1, 2, ["temperature", "humidity"]);
  batcher.add(0, TS, Float64Array.of(20.5, Number.NaN));
  const parsed = parseTelemetryBatch(batcher.add(1, TS + 1, Float64Array.of(Number.NaN, 41.25)) ?? "");
  assert.ok(parsed.ok);
  assert.deepEqual(
    parsed.value.samples.map((s) => s.m),
    [{ temperature: 20.5 }, { humidity: 41.25 }],
  );
  const names = ["temperature", "pressure", "humidity", "accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"];
  const perBatch = samplesPerBatchFor(names, MAX_SAMPLES_PER_BATCH);
  assert.ok(perBatch < MAX_SAMPLES_PER_BATCH && perBatch >= 5, `${perBatch} samples`);
  assert.ok(samplesPerBatchFor(["temperature", "pressure"], MAX_SAMPLES_PER_BATCH) >= 40);
  assert.equal(samplesPerBatchFor(["temperature", "pressure"], 5), 5, "a small batch is left alone");
  const wide = new TelemetryBatcher(0xffffffff, perBatch, names);
  // Temperature, pressure and humidity arrive rounded to 0.01; the others may be any double.
  const worst = Float64Array.from(names.map((_, i) => (i < 3 ? 109_999.99 : -1.2345678901234567e-100)));
  let text: string | undefined;
  for (let i = 0; i < perBatch; i++) text = wide.add(0xffffffff - perBatch + i, 4_102_444_799_999, worst);
  assert.ok(text && text.length <= FLASH_SECTOR_BYTES - 12, `worst-case batch is ${text?.length} bytes`);
});
