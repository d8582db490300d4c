// The set-config parameters: validated all or nothing, named in snake_case as the wire requires,
// and read back from flash only while still valid.

import assert from "node:assert/strict";
import { test } from "node:test";
import { applyConfigParams, configParams, parseRuntimeConfig, type RuntimeConfig } from "../src/settings.ts";

const CURRENT: RuntimeConfig = { sampleIntervalMs: 1000, logLevel: "info" };

test("applies every parameter it knows", () => {
  const next = applyConfigParams(CURRENT, {
    sample_interval_ms: 250,
    log_level: "debug",
    temperature_low: -5,
    temperature_high: 40.5,
  });
  assert.deepEqual(next, { sampleIntervalMs: 250, logLevel: "debug", temperatureLow: -5, temperatureHigh: 40.5 });
  assert.deepEqual(configParams(next), {
    sample_interval_ms: 250,
    log_level: "debug",
    temperature_low: -5,
    temperature_high: 40.5,
  });
  assert.deepEqual(CURRENT, { sampleIntervalMs: 1000, logLevel: "info" }, "the current configuration is untouched");
});

test("refuses the whole change when one parameter is wrong, naming it", () => {
  assert.throws(() => applyConfigParams(CURRENT, {}), /no parameter given/);
  assert.throws(() => applyConfigParams(CURRENT, { sample_interval_ms: 1.5 }), /sample_interval_ms must be an integer/);
  assert.throws(
    () => applyConfigParams(CURRENT, { log_level: "loud" }),
    /log_level must be debug, info, warn or error/,
  );
  assert.throws(
    () => applyConfigParams(CURRENT, { temperature_high: 200 }),
    /temperature_high must be a number -40\.\.85/,
  );
  assert.throws(
    () => applyConfigParams(CURRENT, { temperature_low: 30, temperature_high: 20 }),
    /temperature_low must be below temperature_high/,
  );
  assert.throws(
    () => applyConfigParams(CURRENT, { sample_interval_ms: 500, colour: "red" }),
    /unknown parameter colour/,
  );
});

test("reads a saved configuration back, and ignores one that is corrupt or no longer valid", () => {
  const saved = JSON.stringify(configParams({ sampleIntervalMs: 300, logLevel: "warn" }));
  assert.deepEqual(parseRuntimeConfig(saved, CURRENT), { sampleIntervalMs: 300, logLevel: "warn" });
  assert.equal(parseRuntimeConfig("{not json", CURRENT), undefined);
  assert.equal(parseRuntimeConfig('{"sample_interval_ms":1}', CURRENT), undefined);
  assert.equal(parseRuntimeConfig(undefined, CURRENT), undefined);
});
