// The compiled BMP280 driver running in XS, over the simulated I2C bus, against the register-level
// model: the datasheet's worked example and the failure modes a board can show.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Bmp280Model, I2cBus } from "../sim/index.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

const PINS = { sda: 21, scl: 22 };

function sampleOnce(address: number): string {
  return `
import I2C from "embedded:io/i2c";
import BMP280 from "sensors/bmp280";
${RESULT_PRELUDE}
export default function () {
  try {
    const sensor = new BMP280({ sensor: { io: I2C, data: ${PINS.sda}, clock: ${PINS.scl}, address: ${address} } });
    const sample = sensor.sample();
    sensor.close();
    result({ temperature: sample.temperature, pressure: sample.pressure });
  } catch (error) {
    result({ error: error.message });
  }
}`;
}

async function runSampleOnce(model: Bmp280Model | undefined, address = 0x76): Promise<Record<string, unknown>> {
  const bus = new I2cBus(PINS);
  if (model) bus.attach(0x76, model);
  const run = await runInXs(sampleOnce(address), { buses: [bus] });
  await run.machine.stop();
  const [outcome] = run.results();
  assert.ok(outcome, "the entry module reported a result");
  return outcome;
}

test("reproduces the datasheet's worked example (section 3.12) in XS", async () => {
  const model = new Bmp280Model();
  model.serveRaw(519888, 415148);
  const outcome = await runSampleOnce(model);
  assert.equal(outcome.temperature, 25.08);
  // The 64-bit integer compensation gives 25767233 / 256 Pa; the datasheet's float result is 100653.27.
  assert.equal(outcome.pressure, 25767233 / 256);
  assert.ok(Math.abs((outcome.pressure as number) - 100653.27) < 1);
  assert.equal(model.served.length, 1, "one sample is one burst read of the data registers");
  assert.deepEqual([model.served[0]?.adcT, model.served[0]?.adcP], [519888, 415148]);
});

test("configures normal mode with the default oversampling, filter and standby", async () => {
  const model = new Bmp280Model();
  await runSampleOnce(model);
  model.write(Uint8Array.of(0xf4));
  const [ctrlMeas, config] = model.read(2);
  assert.equal(ctrlMeas, (2 << 5) | (5 << 2) | 0b11, "osrs_t x2, osrs_p x16, normal mode");
  assert.equal(config, (4 << 5) | (2 << 2), "t_sb 500 ms, filter x4");
});

test("rejects a BME280 (chip id 0x60) with a clear error", async () => {
  const outcome = await runSampleOnce(new Bmp280Model({ chipId: 0x60 }));
  assert.equal(outcome.error, "bmp280: unexpected chip id 0x60 (expected 0x58)");
});

test("rejects a bus that reads 0x00 for the chip id", async () => {
  const outcome = await runSampleOnce(new Bmp280Model({ chipId: 0x00 }));
  assert.equal(outcome.error, "bmp280: unexpected chip id 0x00 (expected 0x58)");
});

test("reports an absent device (NACK) with the address", async () => {
  const outcome = await runSampleOnce(new Bmp280Model(), 0x77);
  assert.equal(outcome.error, "bmp280: no response at I2C address 0x77 (write failed: no ACK from address 0x77)");
});

test("closes its I2C device when the constructor fails, so the address can be opened again", async () => {
  const bus = new I2cBus(PINS);
  bus.attach(0x76, new Bmp280Model({ chipId: 0x60 }));
  const run = await runInXs(
    `
import I2C from "embedded:io/i2c";
import BMP280 from "sensors/bmp280";
${RESULT_PRELUDE}
export default function () {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      new BMP280({ sensor: { io: I2C, data: 21, clock: 22 } });
    } catch (error) {
      result({ attempt, error: error.message });
    }
  }
}`,
    { buses: [bus] },
  );
  await run.machine.stop();
  assert.deepEqual(
    run.results().map((r) => r.error),
    ["bmp280: unexpected chip id 0x60 (expected 0x58)", "bmp280: unexpected chip id 0x60 (expected 0x58)"],
  );
});

test("refuses configuration values the chip cannot take", async () => {
  const bus = new I2cBus(PINS);
  bus.attach(0x76, new Bmp280Model());
  const run = await runInXs(
    `
import I2C from "embedded:io/i2c";
import BMP280 from "sensors/bmp280";
${RESULT_PRELUDE}
export default function () {
  const sensor = new BMP280({ sensor: { io: I2C, data: 21, clock: 22 } });
  try {
    sensor.configure({ pressureOversampling: 3 });
  } catch (error) {
    result({ error: error.message, name: error.name });
  }
  sensor.configure({ mode: "sleep" });
  try {
    sensor.sample();
    result({ error: "sampled while asleep before any conversion" });
  } catch (error) {
    result({ error: error.message });
  }
  sensor.close();
}`,
    { buses: [bus] },
  );
  await run.machine.stop();
  assert.deepEqual(run.results(), [
    { error: "bmp280: invalid pressureOversampling 3 (expected one of 1, 2, 4, 8, 16)", name: "RangeError" },
    { error: "bmp280: no conversion available (sensor asleep or not yet measured)" },
  ]);
});
