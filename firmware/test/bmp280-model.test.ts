// The simulated BMP280 at register level: what the datasheet's register map says the driver will
// read, and the conversions it serves and records.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Bmp280Model, compensateFloat, DATASHEET_TRIMMING } from "../sim/index.ts";

const CTRL_NORMAL = (2 << 5) | (5 << 2) | 0b11;

function readRegisters(model: Bmp280Model, register: number, length: number): number[] {
  model.write(Uint8Array.of(register));
  return Array.from(model.read(length));
}

function rawOf(bytes: number[]): { adcP: number; adcT: number } {
  const [p0, p1, p2, t0, t1, t2] = bytes as [number, number, number, number, number, number];
  return { adcP: (p0 << 12) | (p1 << 4) | (p2 >> 4), adcT: (t0 << 12) | (t1 << 4) | (t2 >> 4) };
}

test("answers the chip id and the trimming words little-endian", () => {
  const model = new Bmp280Model();
  assert.deepEqual(readRegisters(model, 0xd0, 1), [0x58]);
  const bytes = Uint8Array.from(readRegisters(model, 0x88, 24));
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint16(0, true), 27504);
  assert.equal(view.getInt16(4, true), -1000);
  assert.equal(view.getUint16(6, true), 36477);
  assert.equal(view.getInt16(16, true), -7);
  assert.equal(view.getInt16(22, true), 6000);
});

test("serves nothing in sleep mode: the data registers keep their reset value", () => {
  const model = new Bmp280Model();
  assert.deepEqual(rawOf(readRegisters(model, 0xf7, 6)), { adcP: 0x80000, adcT: 0x80000 });
  assert.equal(model.served.length, 0);
  assert.equal(model.mode, "sleep");
});

test("in normal mode every burst read of the data registers is one new recorded conversion", () => {
  let now = Date.UTC(2026, 0, 1);
  const model = new Bmp280Model({ seed: 7, now: () => now });
  model.write(Uint8Array.of(0xf4, CTRL_NORMAL));
  const reads: { adcP: number; adcT: number }[] = [];
  for (let i = 0; i < 20; i++) {
    reads.push(rawOf(readRegisters(model, 0xf7, 6)));
    now += 1000;
  }
  assert.equal(model.served.length, 20);
  reads.forEach((raw, i) => {
    const served = model.served[i];
    assert.deepEqual({ adcP: served?.adcP, adcT: served?.adcT }, raw);
    assert.deepEqual(served, compensateFloat(DATASHEET_TRIMMING, raw.adcT, raw.adcP));
    if (i > 0) {
      assert.notEqual(raw.adcT, reads[i - 1]?.adcT);
      assert.notEqual(raw.adcP, reads[i - 1]?.adcP);
    }
  });
  // Reading other registers converts nothing.
  readRegisters(model, 0xd0, 1);
  readRegisters(model, 0x88, 24);
  assert.equal(model.served.length, 20);
});

test("the served values follow the trajectory closely", () => {
  let now = Date.UTC(2026, 0, 1);
  const model = new Bmp280Model({ seed: 3, now: () => now });
  model.write(Uint8Array.of(0xf4, CTRL_NORMAL));
  for (let i = 0; i < 50; i++) {
    readRegisters(model, 0xf7, 6);
    const target = model.environmentAt(now);
    const served = model.served.at(-1);
    assert.ok(served);
    assert.ok(Math.abs(served.temperature - target.temperature) < 0.01);
    assert.ok(Math.abs(served.pressure - target.pressure) < 2);
    now += 60_000;
  }
});

test("the trajectory stays within 21..24 °C and 1005..1015 hPa and differs per seed", () => {
  const start = Date.UTC(2026, 0, 1);
  const traces = [1, 2, 3, 99].map((seed) => {
    const model = new Bmp280Model({ seed });
    const points: number[] = [];
    for (let minute = 0; minute < 24 * 60; minute++) {
      const { temperature, pressure } = model.environmentAt(start + minute * 60_000);
      assert.ok(temperature >= 21 && temperature <= 24, `temperature ${temperature}`);
      assert.ok(pressure >= 100_500 && pressure <= 101_500, `pressure ${pressure}`);
      points.push(temperature);
    }
    return points;
  });
  assert.notDeepEqual(traces[0], traces[1]);
  assert.notDeepEqual(traces[2], traces[3]);
});

test("forced mode converts once and returns to sleep", () => {
  const model = new Bmp280Model();
  model.write(Uint8Array.of(0xf4, (1 << 5) | (1 << 2) | 0b01));
  assert.equal(model.mode, "forced");
  const first = rawOf(readRegisters(model, 0xf7, 6));
  assert.equal(model.mode, "sleep");
  assert.deepEqual(rawOf(readRegisters(model, 0xf7, 6)), first);
  assert.equal(model.served.length, 1);
});

test("writes are register/value pairs; the reset command restores the power-on state", () => {
  const model = new Bmp280Model();
  model.write(Uint8Array.of(0xf4, CTRL_NORMAL, 0xf5, 0x88));
  assert.deepEqual(readRegisters(model, 0xf4, 2), [CTRL_NORMAL, 0x88]);
  model.write(Uint8Array.of(0xe0, 0xb6));
  assert.deepEqual(readRegisters(model, 0xf4, 2), [0, 0]);
  assert.equal(model.mode, "sleep");
});

test("skipped measurements read as 0x80000", () => {
  const model = new Bmp280Model();
  model.write(Uint8Array.of(0xf4, (1 << 5) | 0b11));
  assert.equal(rawOf(readRegisters(model, 0xf7, 6)).adcP, 0x80000);
});

test("serves fixed raw values on request", () => {
  const model = new Bmp280Model();
  model.serveRaw(519888, 415148);
  model.write(Uint8Array.of(0xf4, CTRL_NORMAL));
  assert.deepEqual(rawOf(readRegisters(model, 0xf7, 6)), { adcT: 519888, adcP: 415148 });
  const served = model.served[0];
  assert.ok(served);
  assert.ok(Math.abs(served.temperature - 25.08) < 0.005);
  // Section 3.12 lists 100653.27 Pa, computed without section 8.1's truncation of t_fine to an integer.
  assert.ok(Math.abs(served.pressure - 100653.27) < 0.02);
  assert.throws(() => model.serveRaw(1 << 20, 0), /not 20-bit/);
});
