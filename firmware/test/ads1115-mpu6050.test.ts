// The compiled ADS1115 and MPU-6050 drivers in XS over the simulated I2C bus, against register-level
// models: register reset values from the datasheets, PGA and full-scale scaling examples, single-shot
// (OS polling) and continuous conversions, WHO_AM_I and wake-from-sleep, and the error paths.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ADS1115_CONFIG_RESET,
  ADS1115_HI_THRESH_RESET,
  ADS1115_LO_THRESH_RESET,
  Ads1115Model,
  FaultSet,
  I2cBus,
  Mpu6050Model,
} from "../sim/index.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

const PINS = { sda: 21, scl: 22 };

async function run(
  driver: "ads1115" | "mpu6050",
  body: string,
  attach: Record<number, Ads1115Model | Mpu6050Model>,
  options: { address?: number; faults?: FaultSet } = {},
): Promise<Record<string, unknown>[]> {
  const bus = new I2cBus(PINS, options.faults);
  for (const [address, model] of Object.entries(attach)) bus.attach(Number(address), model);
  const address = options.address ?? (driver === "ads1115" ? 0x48 : 0x68);
  const xs = await runInXs(
    `
import I2C from "embedded:io/i2c";
import Sensor from "sensors/${driver}";
${RESULT_PRELUDE}
const attempt = (f) => { try { f(); } catch (error) { result({ error: error.message }); } };
export default function () {
  attempt(() => {
    const sensor = new Sensor({ sensor: { io: I2C, data: ${PINS.sda}, clock: ${PINS.scl}, address: ${address} } });
    try { ${body} } finally { sensor.close(); }
  });
}`,
    { buses: [bus] },
  );
  await xs.machine.stop();
  return xs.results();
}

test("ads1115: registers power up with the datasheet's reset values", async () => {
  const model = new Ads1115Model();
  const register = (pointer: number): number => {
    model.write(Uint8Array.of(pointer));
    const [msb, lsb] = model.read(2);
    return ((msb as number) << 8) | (lsb as number);
  };
  assert.deepEqual(
    [register(0), register(1), register(2), register(3)],
    [0x0000, ADS1115_CONFIG_RESET, ADS1115_LO_THRESH_RESET, ADS1115_HI_THRESH_RESET],
  );
  assert.equal(ADS1115_CONFIG_RESET, 0x8583);
  const [fromDriver] = await run("ads1115", "result({ config: sensor.readRegister(1) });", { 72: new Ads1115Model() });
  // The driver's own configuration: AIN0 vs GND, ±4.096 V, single-shot, 128 SPS, comparator off.
  assert.equal(fromDriver?.config, 0x8000 | (4 << 12) | (1 << 9) | 0x0100 | (4 << 5) | 0x0003);
});

test("ads1115: single-shot conversions scale by the PGA's full-scale range", async () => {
  const model = new Ads1115Model();
  model.setInput(0, 1.5);
  model.setInput(1, 3.3);
  model.setInput(3, 0.25);
  const results = await run(
    "ads1115",
    `
    for (const [input, range] of [["ain0", 4.096], ["ain0", 2.048], ["ain1", 2.048], ["ain1-ain3", 6.144], ["ain3", 0.256], ["ain0-ain1", 0.512]]) {
      sensor.configure({ input, range, rate: 860 });
      const s = sensor.sample();
      result({ input, range, raw: s.raw, voltage: s.voltage });
    }`,
    { 72: model },
  );
  assert.deepEqual(
    results.map((r) => r.raw),
    [12000, 24000, 32767, 16267, 32000, -32768],
    "1.5 V at ±4.096 V is 1.5 * 32768 / 4.096 = 12000; 3.3 V saturates at ±2.048 V; -1.8 V at ±0.512 V too",
  );
  assert.equal(results[0]?.voltage, 1.5);
  assert.equal(results[1]?.voltage, 1.5);
  assert.ok(Math.abs((results[3]?.voltage as number) - 3.05) < 6.144 / 32768);
  assert.equal(results[4]?.voltage, 0.25);
  assert.equal(model.served.length, 6, "one conversion per single-shot sample");
});

test("ads1115: continuous mode reads the latest conversion without starting one", async () => {
  const model = new Ads1115Model();
  model.setInput(2, 0.9);
  const results = await run(
    "ads1115",
    `sensor.configure({ input: "ain2", range: 1.024, rate: 860, mode: "continuous" });
     for (let i = 0; i < 2; i++) result({ raw: sensor.sample().raw, config: sensor.readRegister(1) });`,
    { 72: model },
  );
  assert.deepEqual(
    results.map((r) => r.raw),
    [28800, 28800],
  );
  assert.equal((results[0]?.config as number) & 0x0100, 0, "MODE bit clear: continuous conversion");
});

test("ads1115: a conversion that never completes times out; an absent chip NACKs", async () => {
  const model = new Ads1115Model();
  model.holdConversion(true);
  const hung = await run("ads1115", "sensor.sample(); result({ error: 'sampled' });", { 72: model });
  assert.deepEqual(hung, [{ error: "ads1115: conversion not done within 18 ms" }]);
  const absent = await run("ads1115", "", { 72: new Ads1115Model() }, { address: 0x49 });
  assert.deepEqual(absent, [
    { error: "ads1115: no response at I2C address 0x49 (write failed: no ACK from address 0x49)" },
  ]);
});

test("mpu6050: power-on reset values: asleep, WHO_AM_I 0x68, ranges zero", () => {
  const model = new Mpu6050Model();
  const at = (register: number): number => {
    model.write(Uint8Array.of(register));
    return model.read(1)[0] as number;
  };
  assert.deepEqual([at(0x6b), at(0x75), at(0x1b), at(0x1c), at(0x3b)], [0x40, 0x68, 0, 0, 0]);
  assert.equal(model.asleep, true);
});

test("mpu6050: wakes the chip and scales by the full-scale range", async () => {
  const model = new Mpu6050Model();
  model.serveMotion({ accelerometer: [0.5, -1, 1.25], gyroscope: [100, -245, 12.5], temperature: 36.53 });
  const results = await run(
    "mpu6050",
    `for (const [accelerometerRange, gyroscopeRange] of [[2, 250], [16, 2000]]) {
       sensor.configure({ accelerometerRange, gyroscopeRange });
       const s = sensor.sample();
       result({ a: [s.accelerometer.x, s.accelerometer.y, s.accelerometer.z], g: [s.gyroscope.x, s.gyroscope.y, s.gyroscope.z], t: s.temperature });
     }`,
    { 104: model },
  );
  assert.equal(model.asleep, false, "SLEEP cleared");
  assert.deepEqual(model.served[0]?.raw, {
    accelerometer: [8192, -16384, 20480],
    temperature: 0,
    gyroscope: [13100, -32095, 1638],
  });
  assert.deepEqual(results[0], { a: [0.5, -1, 1.25], g: [100, -245, 1638 / 131], t: 36.53 });
  // ±16 g: 2048 LSB/g; ±2000 °/s: 16.4 LSB/(°/s).
  assert.deepEqual(model.served[1]?.raw.accelerometer, [1024, -2048, 2560]);
  assert.deepEqual(results[1]?.a, [0.5, -1, 1.25]);
  assert.deepEqual(results[1]?.g, [1640 / 16.4, -4018 / 16.4, 205 / 16.4]);
});

test("mpu6050: the temperature formula is TEMP_OUT / 340 + 36.53", async () => {
  const model = new Mpu6050Model();
  model.serveMotion({ accelerometer: [0, 0, 1], gyroscope: [0, 0, 0], temperature: 36.53 - 3400 / 340 });
  const [outcome] = await run("mpu6050", "result({ t: sensor.sample().temperature });", { 104: model });
  assert.equal(model.served[0]?.raw.temperature, -3400);
  assert.equal(outcome?.t, -3400 / 340 + 36.53);
});

test("mpu6050: a device at rest reads about 1 g on Z", async () => {
  const model = new Mpu6050Model({ seed: 9 });
  const [outcome] = await run(
    "mpu6050",
    "const s = sensor.sample(); result({ z: s.accelerometer.z, x: s.accelerometer.x });",
    { 104: model },
  );
  assert.ok(Math.abs((outcome?.z as number) - 1) < 0.02);
  assert.ok(Math.abs(outcome?.x as number) < 0.02);
});

test("mpu6050: a wrong WHO_AM_I, an absent chip and a stuck bus fail construction", async () => {
  // Another chip answering at 0x68 (here an ADC model) reads back something other than 0x68.
  const wrong = await run("mpu6050", "", { 104: new Ads1115Model() });
  assert.match(String(wrong[0]?.error), /^mpu6050: unexpected WHO_AM_I 0x[0-9a-f]{2} \(expected 0x68\)$/);
  const absent = await run("mpu6050", "", {}, { address: 0x69 });
  assert.deepEqual(absent, [
    { error: "mpu6050: no response at I2C address 0x69 (write failed: no ACK from address 0x69)" },
  ]);
  const faults = new FaultSet(1);
  faults.set("stuck", "i2c");
  const stuck = await run("mpu6050", "", { 104: new Mpu6050Model() }, { faults });
  assert.deepEqual(stuck, [
    { error: "mpu6050: no response at I2C address 0x68 (write failed: i2c timeout: SDA held low)" },
  ]);
});
