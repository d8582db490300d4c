// Deterministic virtual time: a VirtualClock jumps from one due timer to the next, so a day of device
// time runs against a real broker in seconds, every sample arrives, and a seed replays a run exactly.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type TelemetrySample, validateTelemetryBatch } from "@kestrel/wire";
import { startSimDevice, VirtualClock } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** 2026-01-01T00:00:00Z: a fixed start, so timestamps replay too. */
const START = Date.UTC(2026, 0, 1);
const DEVICES = ["day-1", "seed-a", "seed-b", "seed-c", "jitter-a", "jitter-b", "jitter-c"];
const TOKENS = new Map(DEVICES.map((id) => [id, `token-${id}`]));

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-virtual-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function samples(deviceId: string): TelemetrySample[] {
  return broker.published
    .filter((m) => m.topic === `d/${deviceId}/telemetry`)
    .flatMap((m) => {
      const parsed = validateTelemetryBatch(JSON.parse(m.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value.samples;
    });
}

/** Runs deviceId for `duration` of virtual time from START, then powers it off. */
async function run(deviceId: string, seed: number, duration: number, sampleIntervalMs: number): Promise<void> {
  const clock = new VirtualClock({ start: START });
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir: join(stateDir, `${deviceId}-${seed}`),
    sampleIntervalMs,
    samplesPerBatch: 10,
    seed,
    clock,
  });
  try {
    await clock.runUntil(START + duration);
  } finally {
    await device.stop();
  }
}

test("24 h of virtual time: every sample 0..1439 reaches the broker exactly once, in order", async () => {
  await run("day-1", 1, DAY + 30_000, 60_000);
  const received = samples("day-1");
  assert.equal(received.length, 1440);
  received.forEach((sample, index) => {
    assert.equal(sample.seq, index);
    // Virtual time is exact: the n-th sample is taken n+1 intervals after boot.
    assert.equal(sample.ts, START + (index + 1) * 60_000);
  });
});

test("the same seed replays the same telemetry; another seed gives other values", async () => {
  await run("seed-a", 7, HOUR + 30_000, 10_000);
  await run("seed-b", 7, HOUR + 30_000, 10_000);
  await run("seed-c", 8, HOUR + 30_000, 10_000);
  const [a, b, c] = ["seed-a", "seed-b", "seed-c"].map(samples) as [TelemetrySample[], ...TelemetrySample[][]];
  assert.equal(a.length, 360);
  assert.deepEqual(b, a);
  assert.equal(c?.length, a.length);
  assert.notDeepEqual(
    c?.map((sample) => sample.m),
    a.map((sample) => sample.m),
  );
});

test("the firmware's Math.random (reconnect jitter) replays from the seed too", async () => {
  const delays = async (deviceId: string, seed: number): Promise<unknown[]> => {
    broker.setReachable(deviceId, false);
    const clock = new VirtualClock({ start: START });
    const { logger, entries } = captureLogs();
    const device = await startSimDevice({
      deviceId,
      token: TOKENS.get(deviceId) ?? "",
      mqttUrl: broker.url,
      stateDir: join(stateDir, deviceId),
      seed,
      clock,
      logger,
    });
    try {
      await clock.runUntil(START + 5 * 60_000);
    } finally {
      await device.stop();
    }
    return entries.filter((entry) => entry.msg === "mqtt reconnect scheduled").map((entry) => entry.fields.delayMs);
  };
  const a = await delays("jitter-a", 5);
  const b = await delays("jitter-b", 5);
  const c = await delays("jitter-c", 6);
  assert.ok(a.length >= 5, `${a.length} reconnects scheduled`);
  assert.deepEqual(b, a);
  assert.notDeepEqual(c.slice(0, a.length), a);
});
