// A simulated device with several sensors configured: the boot-time I2C scan reports what is on the
// bus, every sensor's metrics arrive in the telemetry, and a sensor that fails leaves its metrics out
// (with an error log line) while the others keep reporting.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type TelemetrySample, validateCommandAck, validateTelemetryBatch } from "@kestrel/wire";
import { type Bme280Model, type Sht3xModel, startSimDevice } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";
import { waitUntil } from "./wait.ts";

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(
    new Map([
      ["sim-sensors", "token-s"],
      ["sim-config", "token-c"],
    ]),
  );
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-sensors-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function samples(deviceId = "sim-sensors"): TelemetrySample[] {
  return broker.published
    .filter((message) => message.topic === `d/${deviceId}/telemetry`)
    .flatMap((message) => {
      const parsed = validateTelemetryBatch(JSON.parse(message.payload));
      assert.ok(parsed.ok);
      return parsed.value.samples;
    });
}

test("scans the bus at boot, samples every configured sensor (one on SPI), and survives one failing", async (t) => {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId: "sim-sensors",
    token: "token-s",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 30,
    samplesPerBatch: 2,
    settings: { sensors: "bmp280@0x76,sht3x@0x44,mpu6050@0x68,bme280@spi:5" },
    logger,
  });
  t.after(() => device.stop());
  await waitUntil(() => samples().length >= 4, "4 samples", 15_000);

  const scan = entries.find((entry) => entry.msg === "i2c scan");
  assert.equal(scan?.fields.found, "0x44 0x68 0x76");
  assert.equal(scan?.fields.count, 3);
  const first = samples()[0];
  assert.deepEqual(Object.keys(first?.m ?? {}).sort(), [
    "accel_x",
    "accel_y",
    "accel_z",
    "bme280_humidity",
    "bme280_pressure",
    "bme280_temperature",
    "gyro_x",
    "gyro_y",
    "gyro_z",
    "humidity",
    "pressure",
    "sht3x_temperature",
    "temperature",
  ]);
  const sht3x = device.models.get(0x44) as Sht3xModel;
  assert.ok(
    Math.abs((first?.m.humidity as number) - (sht3x.served[0]?.humidity as number)) <= 0.0051,
    "rounded to 0.01",
  );
  assert.ok(Math.abs((first?.m.accel_z as number) - 1) < 0.02, "a device at rest reads 1 g on Z");
  const bme280 = device.spiModels.get(5) as Bme280Model;
  assert.ok(Math.abs((first?.m.bme280_humidity as number) - (bme280.served[0]?.humidity as number)) < 0.02);

  device.faults.disconnectSensor(0x44);
  await waitUntil(
    () => entries.some((entry) => entry.msg === "sht3x read failed" && entry.level === "error"),
    "an error log line for the failing sensor",
  );
  const failedAt = samples().length;
  await waitUntil(() => samples().length >= failedAt + 4, "samples after the failure", 15_000);
  const later = samples().slice(failedAt + 1);
  for (const sample of later) {
    assert.equal(sample.m.humidity, undefined, "no humidity while the SHT3x is gone");
    assert.equal(typeof sample.m.temperature, "number", "the BMP280 keeps reporting");
  }
  assert.deepEqual(
    samples().map((sample) => sample.seq),
    samples().map((_, index) => index),
    "seq stays contiguous",
  );
});

test("set-config sensors switches the sensor set (a DHT22 among them) at run time and keeps it across a reboot", async (t) => {
  const { logger } = captureLogs();
  const device = await startSimDevice({
    deviceId: "sim-config",
    token: "token-c",
    mqttUrl: broker.url,
    stateDir,
    // An SHT4x, an ADS1115 and a DHT22 take about 25 ms to read: the interval leaves the loop room.
    sampleIntervalMs: 100,
    samplesPerBatch: 1,
    board: "bmp280@0x76,sht4x@0x45,ads1115@0x48,dht22@4",
    logger,
  });
  t.after(() => device.stop());
  await device.connected;
  await broker.waitForSubscription("sim-config", "d/sim-config/cmd");
  await waitUntil(() => samples("sim-config").length >= 2, "samples from the build's sensor list");
  assert.deepEqual(Object.keys(samples("sim-config")[0]?.m ?? {}).sort(), ["pressure", "temperature"]);

  const command = { v: 1, id: "sensors-1", name: "set-config", params: { sensors: "sht4x@69, ads1115, dht22@4" } };
  await broker.publish("d/sim-config/cmd", JSON.stringify(command));
  const done = await broker.waitFor((m) => m.topic === "d/sim-config/cmd/ack" && m.payload.includes('"done"'));
  const ack = validateCommandAck(JSON.parse(done.payload));
  assert.ok(ack.ok);
  assert.deepEqual(ack.value.result, {
    sample_interval_ms: 100,
    log_level: "info",
    sensors: "sht4x@0x45,ads1115@0x48,dht22@4",
  });
  const preferences = JSON.parse(readFileSync(join(stateDir, "sim-config.preferences.json"), "utf8"));
  assert.equal(JSON.parse(preferences.kestrel.config).sensors, "sht4x@0x45,ads1115@0x48,dht22@4");

  const switched = (): TelemetrySample[] => samples("sim-config").filter((sample) => "voltage" in sample.m);
  await waitUntil(() => switched().length >= 2, "samples from the new sensor set");
  const first = switched()[0];
  assert.deepEqual(Object.keys(first?.m ?? {}).sort(), [
    "dht22_humidity",
    "dht22_temperature",
    "humidity",
    "temperature",
    "voltage",
  ]);
  const dht22 = device.dht22.get(4);
  assert.ok(dht22?.served.some((reading) => reading.temperature === first?.m.dht22_temperature));

  await broker.publish("d/sim-config/cmd", JSON.stringify({ v: 1, id: "reboot-s", name: "reboot" }));
  await waitUntil(() => device.restarts === 1, "the restart");
  const before = switched().length;
  await waitUntil(() => switched().length >= before + 2, "the new sensor set after the reboot");
  const latest = samples("sim-config").at(-1);
  assert.equal(latest?.m.pressure, undefined, "the BMP280 stays out after the reboot");
});
