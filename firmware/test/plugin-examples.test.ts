// The example plugins against worked values, on Node's WebAssembly with the reference host API
// (plugins/reference-host.ts): what sim-plugins.test.ts then requires wasm3 on the device to match.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ReferencePlugin } from "../plugins/reference-host.ts";
import { EXAMPLE_METRICS, pluginBytes } from "./plugin-fixtures.ts";

function load(name: string, sensorNames: string[], config: Record<string, number> = {}): ReferencePlugin {
  return new ReferencePlugin(pluginBytes(name), { sensorNames, metrics: EXAMPLE_METRICS[name] ?? [], config });
}

function outputs(plugin: ReferencePlugin, rows: number[][]): number[] {
  return rows.map((values, i) => plugin.sample({ values, now: 1_800_000_000_000 + i })[0] as number);
}

test("dewpoint: the Magnus formula with Sonntag's constants, in °C or °F, nothing without both readings", () => {
  const plugin = load("dewpoint", ["temperature", "humidity"]);
  assert.equal(plugin.init(), 0);
  const [dew, cold, missing, dry] = outputs(plugin, [
    [25, 60],
    [-10, 80],
    [25, Number.NaN],
    [25, 0],
  ]);
  // 25 °C at 60 %RH: 16.69 °C; -10 °C at 80 %RH: -12.80 °C (Magnus over water), worked by hand.
  assert.ok(Math.abs((dew as number) - 16.69) < 0.01, `25 °C, 60 %: ${dew}`);
  assert.ok(Math.abs((cold as number) + 12.8) < 0.01, `-10 °C, 80 %: ${cold}`);
  assert.ok(Number.isNaN(missing) && Number.isNaN(dry), "no value without humidity, or at 0 %RH");
  const fahrenheit = load("dewpoint", ["temperature", "humidity"], { fahrenheit: 1 });
  assert.equal(fahrenheit.init(), 0);
  assert.ok(Math.abs((outputs(fahrenheit, [[25, 60]])[0] as number) - 62.04) < 0.02);
  assert.equal(load("dewpoint", ["temperature"]).init(), 1, "init refuses a device without humidity");
});

test("smoothing: the mean of the last `window` readings, a missed reading skipped", () => {
  const plugin = load("smoothing", ["temperature"], { window: 3 });
  assert.equal(plugin.init(), 0);
  const averages = outputs(plugin, [[20], [21], [Number.NaN], [22], [23], [26]]);
  assert.deepEqual(averages.slice(0, 2), [20, 20.5]);
  assert.ok(Number.isNaN(averages[2] as number));
  assert.deepEqual(averages.slice(3), [21, 22, 23.666666666666668]);
  assert.equal(load("smoothing", ["temperature"], { window: 33 }).init(), 1, "window above 32 refused");
});

test("threshold: the alarm rises above high, clears below high - hysteresis, and each change is logged once", () => {
  const plugin = load("threshold", ["temperature"], { high: 30, hysteresis: 0.5 });
  assert.equal(plugin.init(), 0);
  assert.deepEqual(outputs(plugin, [[29], [30.1], [29.8], [29.4], [30.2], [30.3]]), [0, 1, 1, 0, 1, 1]);
  assert.deepEqual(plugin.logs, [
    { level: 2, message: "temperature above 30.0" },
    { level: 1, message: "temperature back below 29.5" },
    { level: 2, message: "temperature above 30.0" },
  ]);
});
