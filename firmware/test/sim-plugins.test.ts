// WebAssembly plugins on simulated devices: the real firmware in XS runs each plugin in wasm3 through
// the native binding (the same C as on the ESP32). The example plugins give the outputs Node's own
// WebAssembly gives for the same .wasm and inputs; faulty, unsigned and tampered plugins are refused
// or stopped while the device keeps sampling and publishing; upgrades roll back; all of it persists.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CommandAck, type PluginStatus, parseTelemetryBatch, topics } from "@kestrel/wire";
import { ReferencePlugin } from "../plugins/reference-host.ts";
import { type SimDevice, startSimDevice } from "../sim/index.ts";
import { type Delivered, firstArrivals } from "./arrivals.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";
import { deliver, EXAMPLE_METRICS, pluginBytes, pluginState, signedPackage, TRUSTED } from "./plugin-fixtures.ts";
import { waitUntil } from "./wait.ts";

const DEVICES = ["plug-ref", "plug-faults", "plug-refused", "plug-life"];
const TOKENS = new Map(DEVICES.map((id) => [id, `token-${id}`]));
/** A BME280: temperature, pressure and humidity, what the examples read. */
const SENSORS = "bme280@0x76";
const SENSOR_NAMES = ["temperature", "pressure", "humidity"];

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-plugins-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

async function bootDevice(deviceId: string, t: { after(fn: () => Promise<void>): void }): Promise<SimDevice> {
  const { logger } = captureLogs();
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 50,
    samplesPerBatch: 1,
    settings: { sensors: SENSORS, ...TRUSTED },
    logger,
  });
  t.after(() => device.stop());
  await device.connected;
  await broker.waitForSubscription(deviceId, topics.plugin(deviceId));
  return device;
}

function samplesOf(deviceId: string): Delivered[] {
  return firstArrivals(
    broker.published
      .filter((message) => message.topic === topics.telemetry(deviceId))
      .flatMap((message) => {
        const batch = parseTelemetryBatch(message.payload);
        assert.ok(batch.ok, batch.ok ? "" : batch.error.message);
        return batch.value.samples.map((sample) => ({ ...sample, boot: batch.value.boot }));
      }),
  );
}

async function command(deviceId: string, id: string, name: string, params: Record<string, string | number>) {
  const acked = (): CommandAck | undefined =>
    broker.published
      .filter((message) => message.topic === topics.commandAck(deviceId))
      .map((message) => JSON.parse(message.payload) as CommandAck)
      .find((ack) => ack.id === id && ack.status !== "accepted");
  await broker.publish(topics.command(deviceId), JSON.stringify({ v: 1, id, name, params }));
  await waitUntil(() => acked() !== undefined, `the final ack of ${id}`);
  return acked() as CommandAck;
}

test("the example plugins give in the simulator (wasm3 in XS) what the same .wasm gives under Node's WebAssembly", async (t) => {
  const deviceId = "plug-ref";
  await bootDevice(deviceId, t);
  // The threshold sits at the temperature the model shows now, so its noise crosses it both ways.
  await waitUntil(() => samplesOf(deviceId).length > 0, "a first sample");
  const now = samplesOf(deviceId).at(-1)?.m.temperature as number;
  const configs = { smoothing: { window: 4 }, dewpoint: {}, threshold: { high: now, hysteresis: 0.01 } };
  for (const [name, config] of Object.entries(configs)) {
    const since = broker.published.length;
    await deliver(broker, deviceId, signedPackage(name, { config }));
    const status = await pluginState(broker, deviceId, name, (s) => s.state === "enabled", since);
    assert.equal(status.version, "1.0.0");
  }
  const metric = (name: string): string => `${name}__${EXAMPLE_METRICS[name]?.[0]}`;
  await waitUntil(
    () => samplesOf(deviceId).filter((sample) => metric("threshold") in sample.m).length >= 40,
    "40 samples with every plugin's metric",
    30_000,
  );
  const samples = samplesOf(deviceId);
  for (const [name, config] of Object.entries(configs)) {
    const from = samples.findIndex((sample) => metric(name) in sample.m);
    const run = samples.slice(from);
    const reference = new ReferencePlugin(pluginBytes(name), {
      sensorNames: SENSOR_NAMES,
      metrics: EXAMPLE_METRICS[name] ?? [],
      config,
    });
    assert.equal(reference.init(), 0);
    let compared = 0;
    for (const sample of run) {
      const values = SENSOR_NAMES.map((sensor) => sample.m[sensor] ?? Number.NaN);
      const expected = reference.sample({ values, now: sample.ts })[0] as number;
      const got = sample.m[metric(name)];
      if (Number.isNaN(expected)) assert.equal(got, undefined, `${name} emitted nothing at seq ${sample.seq}`);
      else assert.equal(got, expected, `${name} at seq ${sample.seq}: wasm3 ${got}, V8 ${expected}`);
      compared++;
    }
    assert.ok(compared >= 40, `${name}: ${compared} samples compared`);
  }
  // The alarm was raised and cleared, or the comparison proves little about the threshold plugin.
  const alarms = new Set(samples.map((sample) => sample.m[metric("threshold")]).filter((v) => v !== undefined));
  assert.deepEqual([...alarms].sort(), [0, 1]);
});
