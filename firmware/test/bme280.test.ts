// BME280 humidity against the datasheet's formulas, and the BMP280 / BME280 drivers over SPI: the
// compiled drivers in XS against the same register models the I2C bus uses, behind the datasheet's
// SPI control-byte protocol. Register reset values come from the BME280 memory map (table 18).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Bme280Model,
  Bmp280Model,
  BoschSpiAdapter,
  humidityFloat,
  I2cBus,
  SpiBus,
  SpiPort,
  TYPICAL_HUMIDITY_TRIMMING,
} from "../sim/index.ts";
import { compensateHumidity } from "../src/sensors/bme280.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

const SPI_PINS = { in: 19, out: 23, clock: 18 };
const SELECT = 5;

test("integer humidity compensation stays within 0.01 %RH of the datasheet's float formula", () => {
  let compared = 0;
  for (let temperature = -40; temperature <= 85; temperature += 5) {
    const tFine = Math.round(temperature * 5120);
    for (let adcH = 0; adcH <= 0xffff; adcH += 97) {
      const float = humidityFloat(TYPICAL_HUMIDITY_TRIMMING, adcH, tFine);
      const integer = compensateHumidity(TYPICAL_HUMIDITY_TRIMMING, adcH, tFine) / 1024;
      assert.ok(integer >= 0 && integer <= 100, "the integer path clamps to 0..100 %RH");
      if (float > 0 && float < 100) {
        assert.ok(Math.abs(float - integer) < 0.01, `adc_H ${adcH} at ${temperature} °C: ${integer} vs ${float}`);
        compared++;
      }
    }
  }
  assert.ok(compared > 4000, `compared ${compared} in-range points`);
});

test("the BME280 model powers up with the datasheet's reset values", () => {
  const model = new Bme280Model();
  const at = (register: number, length = 1): number[] => {
    model.write(Uint8Array.of(register));
    return Array.from(model.read(length));
  };
  assert.deepEqual(at(0xd0), [0x60], "chip id");
  assert.deepEqual(at(0xf2, 4), [0x00, 0x00, 0x00, 0x00], "ctrl_hum, status, ctrl_meas, config");
  assert.deepEqual(at(0xfd, 2), [0x80, 0x00], "hum_msb, hum_lsb");
  assert.deepEqual(at(0xa1), [TYPICAL_HUMIDITY_TRIMMING.H1]);
});

function sampleEntry(driver: "bmp280" | "bme280", sensor: string): string {
  return `
import I2C from "embedded:io/i2c";
import SPI from "embedded:io/spi";
import Sensor from "sensors/${driver}";
${RESULT_PRELUDE}
export default function () {
  try {
    const sensor = new Sensor({ sensor: ${sensor} });
    const s = sensor.sample();
    sensor.close();
    result({ temperature: s.temperature, pressure: s.pressure, humidity: s.humidity });
  } catch (error) {
    result({ error: error.message });
  }
}`;
}

const OVER_SPI = `{ io: SPI, in: ${SPI_PINS.in}, out: ${SPI_PINS.out}, clock: ${SPI_PINS.clock}, select: ${SELECT} }`;
const OVER_I2C = "{ io: I2C, data: 21, clock: 22, address: 0x77 }";

async function overSpi(driver: "bmp280" | "bme280", model: Bmp280Model | Bme280Model | undefined) {
  const bus = new SpiBus(SPI_PINS);
  if (model) bus.attach(SELECT, new BoschSpiAdapter(model));
  const run = await runInXs(sampleEntry(driver, OVER_SPI), { ports: { spi: new SpiPort([bus]) } });
  await run.machine.stop();
  return run.results();
}

test("BMP280 over SPI reproduces the datasheet's worked example and configures the chip", async () => {
  const model = new Bmp280Model();
  model.serveRaw(519888, 415148);
  const [outcome] = await overSpi("bmp280", model);
  assert.equal(outcome?.temperature, 25.08);
  assert.equal(outcome?.pressure, 25767233 / 256);
  assert.equal(model.served.length, 1, "one burst read over SPI latches one conversion");
  model.write(Uint8Array.of(0xf4));
  assert.deepEqual(Array.from(model.read(2)), [(2 << 5) | (5 << 2) | 0b11, (4 << 5) | (2 << 2)]);
});

test("an empty SPI select reads 0xFF, which the chip-id check rejects", async () => {
  assert.deepEqual(await overSpi("bmp280", undefined), [{ error: "bmp280: unexpected chip id 0xff (expected 0x58)" }]);
});

test("BME280 over SPI and over I2C: temperature, pressure and humidity match the float formulas", async () => {
  const spiModel = new Bme280Model({ seed: 3 });
  const [spi] = await overSpi("bme280", spiModel);
  const i2cModel = new Bme280Model({ seed: 4 });
  const bus = new I2cBus({ sda: 21, scl: 22 });
  bus.attach(0x77, i2cModel);
  const run = await runInXs(sampleEntry("bme280", OVER_I2C), { buses: [bus] });
  await run.machine.stop();
  const [i2c] = run.results();
  for (const [outcome, model] of [
    [spi, spiModel],
    [i2c, i2cModel],
  ] as const) {
    const served = model.served[0];
    assert.ok(served && outcome, "one conversion served and read");
    assert.equal(model.served.length, 1);
    assert.ok(Math.abs((outcome.temperature as number) - served.temperature) <= 0.01);
    assert.ok(Math.abs((outcome.pressure as number) - served.pressure) < 0.5);
    assert.ok(Math.abs((outcome.humidity as number) - served.humidity) < 0.01);
    assert.ok((outcome.humidity as number) > 25 && (outcome.humidity as number) < 65);
  }
});

test("BME280 writes ctrl_hum before ctrl_meas, so humidity oversampling takes effect", async () => {
  const model = new Bme280Model();
  model.serveRaw(519888, 415148, 0x6a00);
  const [outcome] = await overSpi("bme280", model);
  const tFine = 128422; // the BMP280 datasheet example's t_fine
  assert.equal(outcome?.humidity, compensateHumidity(TYPICAL_HUMIDITY_TRIMMING, 0x6a00, tFine) / 1024);
  model.write(Uint8Array.of(0xf2));
  assert.deepEqual(Array.from(model.read(1)), [1], "osrs_h x1");
});

test("the BME280 driver refuses a BMP280 and the BMP280 driver a BME280", async () => {
  const [bme] = await overSpi("bme280", new Bmp280Model());
  const [bmp] = await overSpi("bmp280", new Bme280Model());
  assert.deepEqual(
    [bme?.error, bmp?.error],
    ["bme280: unexpected chip id 0x58 (expected 0x60)", "bmp280: unexpected chip id 0x60 (expected 0x58)"],
  );
});
