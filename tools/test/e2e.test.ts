// End to end: simulated ESP32s run the compiled firmware in the XS engine, read
// the simulated BMP280 over I2C and publish over TLS (verified against the
// platform's local CA) through the gateway to the cloud; every reading comes back
// from the history API exactly once, with the values the sensor model produced.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync } from "mqtt";
import { type Platform, startPlatform } from "../src/platform.ts";
import { CloudApi, type RawSample, silent, tempDir, until } from "./helpers.ts";

const DEVICES = 3;
const SAMPLES_PER_BATCH = 5;
const MIN_SAMPLES = 20;
// The driver's integer compensation against the model's floating-point formula.
const TEMPERATURE_TOLERANCE = 0.01;
const PRESSURE_TOLERANCE = 1;

describe("walking skeleton end to end", () => {
  let platform: Platform;
  let api: CloudApi;
  const startedAt = Date.now() - 60_000;
  const history = new Map<string, RawSample[]>();

  before(async () => {
    platform = await startPlatform({
      dataDir: await tempDir("e2e"),
      deviceCount: DEVICES,
      logger: silent,
      sampleIntervalMs: 100,
      samplesPerBatch: SAMPLES_PER_BATCH,
    });
    api = new CloudApi(platform.cloudUrl);
    await api.login(platform.credentials.admin.email, platform.credentials.admin.password);
    for (const device of platform.devices) {
      await until(
        async () => {
          const samples = await api.rawHistory(device.deviceId, startedAt, Date.now() + 60_000);
          return samples.length >= MIN_SAMPLES ? samples : undefined;
        },
        `${MIN_SAMPLES} samples from ${device.deviceId}`,
        60_000,
      );
    }
    // Stop the sensors, then let the pipeline drain before reading the history.
    const served = new Map(platform.devices.map((d) => [d.deviceId, d.bmp280.served]));
    await platform.stopDevices();
    await until(async () => (platform.gateway.forwarder.depth === 0 ? true : undefined), "gateway queue drained");
    await platform.gateway.forwarder.flush();
    for (const [deviceId] of served) {
      history.set(deviceId, await api.rawHistory(deviceId, startedAt, Date.now() + 60_000));
    }
    servedByDevice = served;
  });

  let servedByDevice = new Map<string, Array<{ temperature: number; pressure: number }>>();

  after(async () => {
    await platform?.stop();
  });

  test("each device's readings arrive exactly once, in sequence, without gaps", () => {
    assert.equal(history.size, DEVICES);
    for (const [deviceId, samples] of history) {
      const keys = new Set(samples.map((s) => `${s.boot}:${s.seq}`));
      assert.equal(keys.size, samples.length, `${deviceId}: duplicate (boot, seq)`);
      const boots = new Set(samples.map((s) => s.boot));
      assert.equal(boots.size, 1, `${deviceId}: one boot expected`);
      assert.deepEqual(
        samples.map((s) => s.seq),
        samples.map((_, i) => i),
        `${deviceId}: seq must run 0..n-1`,
      );
      const served = servedByDevice.get(deviceId) ?? [];
      // Only the last, partly filled batch may still have been on the device when it stopped.
      assert.ok(served.length - samples.length < 2 * SAMPLES_PER_BATCH, `${deviceId}: lost readings`);
    }
  });

  test("the stored values are the ones the BMP280 model produced", () => {
    for (const [deviceId, samples] of history) {
      const served = servedByDevice.get(deviceId) ?? [];
      for (const sample of samples) {
        const truth = served[sample.seq];
        assert.ok(truth, `${deviceId} seq ${sample.seq}: the model served no such reading`);
        const t = sample.m.temperature ?? Number.NaN;
        const p = sample.m.pressure ?? Number.NaN;
        assert.ok(Math.abs(t - truth.temperature) <= TEMPERATURE_TOLERANCE, `${deviceId}#${sample.seq}: ${t} °C`);
        assert.ok(Math.abs(p - truth.pressure) <= PRESSURE_TOLERANCE, `${deviceId}#${sample.seq}: ${p} Pa`);
      }
      // The model drifts, so distinct readings prove the values are not a constant.
      assert.ok(new Set(samples.map((s) => s.m.pressure)).size > 1, `${deviceId}: pressure never changed`);
    }
  });

  test("a batch replayed through the gateway is not stored twice", async () => {
    const [first] = platform.credentials.devices;
    assert.ok(first);
    const before = history.get(first.deviceId) ?? [];
    const replay = {
      v: 1,
      boot: before[0]?.boot,
      samples: before.slice(0, 3).map(({ seq, ts, m }) => ({ seq, ts, m })),
    };
    const client = await connectAsync(platform.mqttUrl, {
      clientId: first.deviceId,
      username: first.deviceId,
      password: first.token,
      reconnectPeriod: 0,
      ca: platform.tls.ca,
    });
    await client.publishAsync(`d/${first.deviceId}/telemetry`, JSON.stringify(replay), { qos: 1 });
    await client.endAsync();
    await until(async () => (platform.gateway.forwarder.depth === 0 ? true : undefined), "replay forwarded");
    await platform.gateway.forwarder.flush();
    const afterReplay = await api.rawHistory(first.deviceId, startedAt, Date.now() + 60_000);
    assert.equal(afterReplay.length, before.length);
    assert.deepEqual(afterReplay, before);
  });

  test("a device with a wrong token is refused by the gateway", async () => {
    const [first] = platform.credentials.devices;
    assert.ok(first);
    await assert.rejects(
      connectAsync(platform.mqttUrl, {
        clientId: first.deviceId,
        username: first.deviceId,
        password: "wrong-token",
        reconnectPeriod: 0,
        ca: platform.tls.ca,
      }),
      /Bad username or password/,
    );
  });

  test("the gateway serves MQTT over TLS only, with a certificate from the platform's CA", async () => {
    assert.match(platform.mqttUrl, /^mqtts:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(platform.mqttPlainUrl, undefined);
    assert.equal(platform.gateway.mqttPort, undefined);
    const [first] = platform.credentials.devices;
    assert.ok(first);
    // Without the local CA a client cannot verify the gateway.
    await assert.rejects(
      connectAsync(platform.mqttUrl, {
        clientId: first.deviceId,
        username: first.deviceId,
        password: first.token,
        reconnectPeriod: 0,
      }),
      (error: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO_GET_ISSUER/.test(String(error.code)),
    );
  });
});
