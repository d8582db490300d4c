// The driver's integer compensation against the datasheet: the worked example, the datasheet's own
// 64-bit C code (transcribed here with BigInt) over the sensor's whole operating range, and the
// floating-point formula within the tolerance the firmware promises.

import assert from "node:assert/strict";
import { test } from "node:test";
import { compensateFloat, DATASHEET_TRIMMING } from "../sim/index.ts";
import {
  type Bmp280Calibration,
  compensatePressure,
  compensateTemperature,
  temperatureFromFine,
} from "../src/sensors/bmp280.ts";

const cal: Bmp280Calibration = { ...DATASHEET_TRIMMING };

/** bmp280_compensate_P_int64 from datasheet section 8.2, line by line; undefined where it divides by <= 0. */
function referencePressure(trimming: Bmp280Calibration, adcP: number, tFine: number): number | undefined {
  const c = Object.fromEntries(Object.entries(trimming).map(([name, value]) => [name, BigInt(value)])) as Record<
    keyof Bmp280Calibration,
    bigint
  >;
  let var1 = BigInt(tFine) - 128000n;
  let var2 = var1 * var1 * c.P6;
  var2 = var2 + ((var1 * c.P5) << 17n);
  var2 = var2 + (c.P4 << 35n);
  var1 = ((var1 * var1 * c.P3) >> 8n) + ((var1 * c.P2) << 12n);
  var1 = (((1n << 47n) + var1) * c.P1) >> 33n;
  if (var1 <= 0n) return undefined;
  let p = 1048576n - BigInt(adcP);
  p = (((p << 31n) - var2) * 3125n) / var1;
  var1 = (c.P9 * (p >> 13n) * (p >> 13n)) >> 25n;
  var2 = (c.P8 * p) >> 19n;
  p = ((p + var1 + var2) >> 8n) + (c.P7 << 4n);
  return Number(p);
}

test("datasheet worked example: t_fine 128422, 25.08 °C, 100653.25 Pa", () => {
  const tFine = compensateTemperature(cal, 519888);
  assert.equal(tFine, 128422);
  assert.equal(temperatureFromFine(tFine), 25.08);
  const q24_8 = compensatePressure(cal, 415148, tFine);
  assert.equal(q24_8, 25767233);
  assert.ok(Math.abs(q24_8 / 256 - 100653.27) < 0.05);
});

test("pressure equals the datasheet's 64-bit integer code over the operating range", () => {
  let compared = 0;
  // With this trimming: adc_T spans about -41..86 °C, adc_P about 250..1600 hPa.
  for (let adcT = 310_000; adcT <= 715_000; adcT += 4_999) {
    const tFine = compensateTemperature(cal, adcT);
    for (let adcP = 150_000; adcP <= 850_000; adcP += 3_001) {
      assert.equal(
        compensatePressure(cal, adcP, tFine),
        referencePressure(cal, adcP, tFine),
        `adcT ${adcT}, adcP ${adcP}`,
      );
      compared++;
    }
  }
  assert.ok(compared > 10_000);
});

test("is exact for any 16-bit trimming words over t_fine of -40..85 °C", () => {
  let state = 42;
  const random = (low: number, high: number): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return low + (state % (high - low + 1));
  };
  for (let round = 0; round < 200; round++) {
    const trimming: Bmp280Calibration = {
      ...cal,
      P1: random(1, 65535),
      P2: random(-32768, 32767),
      P3: random(-32768, 32767),
      P4: random(-32768, 32767),
      P5: random(-32768, 32767),
      P6: random(-32768, 32767),
      P7: random(-32768, 32767),
      P8: random(-32768, 32767),
      P9: random(-32768, 32767),
    };
    for (const tFine of [-204_800, -100_000, 0, 128_422, 300_000, 435_200]) {
      for (let adcP = 0; adcP < 1 << 20; adcP += 65_537) {
        const expected = referencePressure(trimming, adcP, tFine);
        if (expected !== undefined) assert.equal(compensatePressure(trimming, adcP, tFine), expected);
      }
    }
  }
});

test("stays within 0.01 °C and 1 Pa of the floating-point formula", () => {
  let worstT = 0;
  let worstP = 0;
  for (let adcT = 310_000; adcT <= 715_000; adcT += 997) {
    const tFine = compensateTemperature(cal, adcT);
    for (let adcP = 150_000; adcP <= 850_000; adcP += 10_007) {
      const float = compensateFloat(cal, adcT, adcP);
      worstT = Math.max(worstT, Math.abs(temperatureFromFine(tFine) - float.temperature));
      worstP = Math.max(worstP, Math.abs(compensatePressure(cal, adcP, tFine) / 256 - float.pressure));
    }
  }
  assert.ok(worstT <= 0.01, `worst temperature error ${worstT}`);
  assert.ok(worstP <= 1, `worst pressure error ${worstP}`);
});
