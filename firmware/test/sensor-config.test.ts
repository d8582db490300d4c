// The sensor list as configuration: parsing "kind@address" entries, defaults, refusals, and the
// set-config `sensors` parameter that overrides the build's list at run time.

import assert from "node:assert/strict";
import { test } from "node:test";
import { formatSensorList, parseSensorList } from "../src/sensor-config.ts";
import { applyConfigParams, configParams, parseRuntimeConfig, readSettings } from "../src/settings.ts";

test("parses kinds with hex, decimal or default addresses, and a DHT22 by pin", () => {
  const specs = parseSensorList(" bmp280@0x77, sht3x , mpu6050@105,dht22@4, bme280@spi:5 ");
  assert.deepEqual(specs, [
    { kind: "bmp280", bus: "i2c", address: 0x77 },
    { kind: "sht3x", bus: "i2c", address: 0x44 },
    { kind: "mpu6050", bus: "i2c", address: 105 },
    { kind: "dht22", bus: "pin", address: 4 },
    { kind: "bme280", bus: "spi", address: 5 },
  ]);
  assert.equal(formatSensorList(specs), "bmp280@0x77,sht3x@0x44,mpu6050@0x69,dht22@4,bme280@spi:5");
  assert.deepEqual(parseSensorList(""), []);
});

test("refuses unknown sensors, bad addresses and an address used twice", () => {
  assert.throws(() => parseSensorList("bmp999@0x76"), /unknown sensor "bmp999"/);
  assert.throws(() => parseSensorList("sht3x@0x80"), /needs an I2C address/);
  assert.throws(() => parseSensorList("dht22@64"), /needs a pin 0\.\.63/);
  assert.throws(() => parseSensorList("sht3x@0x44,sht4x@0x44"), /address 0x44 is used twice/);
  assert.throws(() => parseSensorList("dht22@5,bmp280@spi:5"), /pin spi:5 is used twice/);
  assert.throws(() => parseSensorList("sht3x@spi:5"), /only a BMP280 or BME280 sits on SPI/);
  assert.throws(() => parseSensorList("bme280@spi:"), /needs a select pin/);
  const sixImus = "mpu6050@0x68,mpu6050@0x69,mpu6050@0x6a,mpu6050@0x6b,mpu6050@0x6c,mpu6050@0x6d";
  assert.throws(() => parseSensorList(sixImus), /more than 32 metrics a sample .* at "mpu6050@0x6d"/);
  // A pin and an I2C address with the same number do not collide.
  assert.equal(parseSensorList("dht22@5,ads1115@5").length, 2);
});

test("the build's list defaults to a BMP280 at bmp280Address", () => {
  const base = {
    deviceId: "dev-1",
    token: "t",
    mqttHost: "127.0.0.1",
    mqttPort: 1883,
    mqttTls: 0,
    sda: 21,
    scl: 22,
    bmp280Address: 0x77,
    sampleIntervalMs: 1000,
    samplesPerBatch: 5,
    flashPartition: "kestrel",
    logPartition: "klog",
    ledPin: 2,
    watchdogTimeoutMs: 30_000,
    safeModeAfterResets: 3,
    safeModeWindowMs: 600_000,
  };
  assert.deepEqual(readSettings({ ...base, sensors: "" }).sensors, [{ kind: "bmp280", bus: "i2c", address: 0x77 }]);
  assert.deepEqual(readSettings({ ...base, sensors: "bme280@0x76" }).sensors, [
    { kind: "bme280", bus: "i2c", address: 0x76 },
  ]);
  assert.throws(() => readSettings({ ...base, sensors: "thermocouple" }), /unknown sensor/);
  assert.deepEqual(readSettings(base).spi, { in: 19, out: 23, clock: 18 }, "VSPI when a build predates the keys");
});

test("set-config sensors is validated, normalized, persisted and read back", () => {
  const current = { sampleIntervalMs: 1000, logLevel: "info" } as const;
  const next = applyConfigParams(current, { sensors: "sht4x@69" });
  assert.equal(next.sensors, "sht4x@0x45");
  assert.deepEqual(configParams(next), { sample_interval_ms: 1000, log_level: "info", sensors: "sht4x@0x45" });
  assert.deepEqual(parseRuntimeConfig(JSON.stringify(configParams(next)), current), next);
  assert.throws(() => applyConfigParams(current, { sensors: "" }), /at least one sensor/);
  assert.throws(() => applyConfigParams(current, { sensors: 7 }), /sensors must be a list/);
  assert.throws(() => applyConfigParams(current, { sensors: "sht3x@0x44,sht3x@0x44" }), /used twice/);
});
