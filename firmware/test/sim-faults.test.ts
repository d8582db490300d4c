// Fault injection: each fault the simulator can inject, and what the firmware makes of it: sensor
// faults give error logs and no readings (never wrong ones), a clock jump moves the timestamps, and
// a power cut at any moment (even in the middle of a flash write) leaves a ring the firmware recovers.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CLOCK_VALID_FROM_MS, validateTelemetryBatch } from "@kestrel/wire";
import { REG_ID } from "../sim/bmp280-model.ts";
import {
  Bmp280Model,
  BusTimeoutError,
  FaultSet,
  I2cBus,
  I2cNackError,
  type SimDevice,
  startSimDevice,
  VirtualClock,
} from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { type CapturedLog, captureLogs } from "./log-capture.ts";

const START = Date.UTC(2026, 0, 1);
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const BMP280 = 0x76;
const SWEEP = [4, 13, 22, 31, 40, 49];
const DEVICES = [
  ...["f-nack", "f-stuck", "f-corrupt", "f-clock", "f-power", "f-torn-1", "f-torn-2", "f-torn-3"],
  ...SWEEP.map((write) => `f-sweep-${write}`),
];
const TOKENS = new Map(DEVICES.map((id) => [id, `token-${id}`]));

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-faults-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

interface Delivered {
  boot: number;
  seq: number;
  ts: number;
}

function delivered(deviceId: string): Delivered[] {
  return broker.published
    .filter((m) => m.topic === `d/${deviceId}/telemetry`)
    .flatMap((m) => {
      const parsed = validateTelemetryBatch(JSON.parse(m.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value.samples.map(({ seq, ts }) => ({ boot: parsed.value.boot, seq, ts }));
    });
}

function errorsMatching(entries: CapturedLog[], pattern: RegExp): CapturedLog[] {
  return entries.filter((entry) => entry.level !== "info" && pattern.test(String(entry.fields.error)));
}

async function startDevice(
  deviceId: string,
  clock: VirtualClock,
): Promise<{ device: SimDevice; entries: CapturedLog[] }> {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 10 * SECOND,
    samplesPerBatch: 2,
    seed: 42,
    clock,
    logger,
  });
  return { device, entries };
}

test("the fault set: a stuck bus times out, a disconnected device NACKs, corruption flips one bit", () => {
  const faults = new FaultSet(1);
  const bus = new I2cBus({ sda: 21, scl: 22 }, faults);
  bus.attach(BMP280, new Bmp280Model({ seed: 1, now: () => START }));
  const readId = (): number => {
    bus.write(BMP280, Uint8Array.of(REG_ID));
    return bus.read(BMP280, 1)[0] as number;
  };
  assert.equal(readId(), 0x58);
  faults.set("stuck", "i2c");
  assert.throws(readId, BusTimeoutError);
  faults.clear("stuck", "i2c");
  faults.set("disconnect", "i2c:0x76");
  assert.throws(readId, I2cNackError);
  faults.clear("disconnect", "i2c:0x76");
  faults.set("corrupt", "i2c:0x76");
  const corrupted = readId();
  assert.notEqual(corrupted, 0x58);
  // Exactly one bit differs.
  const diff = corrupted ^ 0x58;
  assert.equal(diff & (diff - 1), 0);
});

test("a disconnected sensor yields error logs and no readings; reconnected, sampling resumes", async () => {
  const clock = new VirtualClock({ start: START });
  const { device, entries } = await startDevice("f-nack", clock);
  try {
    await clock.runUntil(START + MINUTE);
    const before = delivered("f-nack").length;
    assert.ok(before >= 4);
    device.faults.disconnectSensor(BMP280);
    await clock.runUntil(START + 3 * MINUTE);
    assert.ok(errorsMatching(entries, /no ACK from address 0x76/).length > 0);
    const during = delivered("f-nack").filter((s) => s.ts > START + MINUTE + 10 * SECOND);
    assert.deepEqual(during, []);
    device.faults.disconnectSensor(BMP280, false);
    await clock.runUntil(START + 5 * MINUTE);
    assert.ok(delivered("f-nack").some((s) => s.ts > START + 3 * MINUTE + 10 * SECOND));
  } finally {
    await device.stop();
  }
});

test("a stuck bus times out every transaction: error logs, no readings, the device keeps running", async () => {
  const clock = new VirtualClock({ start: START });
  const { device, entries } = await startDevice("f-stuck", clock);
  try {
    await clock.runUntil(START + MINUTE);
    device.faults.stickBus();
    await clock.runUntil(START + 3 * MINUTE);
    assert.ok(errorsMatching(entries, /timeout: SDA held low/).length > 0);
    assert.deepEqual(
      delivered("f-stuck").filter((s) => s.ts > START + MINUTE + 10 * SECOND),
      [],
    );
    device.faults.stickBus(false);
    await clock.runUntil(START + 5 * MINUTE);
    assert.ok(delivered("f-stuck").some((s) => s.ts > START + 3 * MINUTE + 10 * SECOND));
    assert.equal(device.restarts, 0);
  } finally {
    await device.stop();
  }
});

test("corrupted reads: a sensor answering a wrong chip id at boot is refused, not read", async () => {
  const clock = new VirtualClock({ start: START });
  const { device, entries } = await startDevice("f-corrupt", clock);
  try {
    await clock.runUntil(START + MINUTE);
    device.faults.corruptReads(BMP280);
    await device.faults.powerLoss({ offMs: SECOND });
    await clock.runUntil(START + 4 * MINUTE);
    assert.ok(errorsMatching(entries, /unexpected chip id|CRC|implausible|invalid/i).length > 0);
    assert.deepEqual(
      delivered("f-corrupt").filter((s) => s.ts > START + MINUTE + 10 * SECOND),
      [],
    );
  } finally {
    await device.stop();
  }
});

test("a clock jump moves the wall clock only: timestamps jump, back before 2020 readings are held back", async () => {
  const clock = new VirtualClock({ start: START });
  const { device, entries } = await startDevice("f-clock", clock);
  try {
    await clock.runUntil(START + MINUTE);
    device.faults.jumpClock(24 * 60 * MINUTE);
    await clock.runUntil(START + 2 * MINUTE);
    const jumped = delivered("f-clock").filter((s) => s.ts > START + 24 * 60 * MINUTE);
    assert.ok(jumped.length >= 4);
    // The sample timer kept its pace through the jump: the sequence has no gap.
    assert.deepEqual(
      delivered("f-clock").map((sample) => sample.seq),
      delivered("f-clock").map((_, index) => index),
    );
    const count = delivered("f-clock").length;
    device.faults.jumpClock(-(START + 24 * 60 * MINUTE + 2 * MINUTE) + 1000);
    await clock.runUntil(START + 4 * MINUTE);
    assert.ok(entries.some((entry) => /clock not set/.test(String(entry.msg))));
    assert.ok(delivered("f-clock").every((s) => s.ts >= CLOCK_VALID_FROM_MS));
    assert.ok(delivered("f-clock").length <= count + 2);
  } finally {
    await device.stop();
  }
});

test("power loss at an arbitrary moment: the device boots again and carries on", async () => {
  const clock = new VirtualClock({ start: START });
  const { device } = await startDevice("f-power", clock);
  try {
    await clock.runUntil(START + MINUTE);
    await device.faults.powerLoss({ offMs: 5 * SECOND });
    await clock.runUntil(START + 3 * MINUTE);
    assert.equal(device.powerCycles, 1);
    const boots = new Set(delivered("f-power").map((s) => s.boot));
    assert.deepEqual([...boots].sort(), [1, 2]);
  } finally {
    await device.stop();
  }
});

/**
 * Offline, every batch goes to the flash ring: three writes per record (header, payload, commit).
 * Tearing the n-th write of a record must cost at most that record; the others are replayed.
 */
for (const write of [1, 2, 3]) {
  test(`power loss tearing flash write ${write} of a record: the ring recovers and replays the rest`, async () => {
    const deviceId = `f-torn-${write}`;
    const clock = new VirtualClock({ start: START });
    const { device, entries } = await startDevice(deviceId, clock);
    try {
      await clock.runUntil(START + 30 * SECOND);
      broker.setReachable(deviceId, false);
      // Two records stored offline, then the power goes during the third.
      await clock.runUntil(START + 70 * SECOND);
      await device.faults.powerLoss({ atFlashWrite: write, offMs: 5 * SECOND });
      await clock.runUntil(START + 3 * MINUTE);
      assert.equal(device.powerCycles, 1);
      assert.ok(entries.some((entry) => entry.msg === "flash write torn"));
      broker.setReachable(deviceId, true);
      await clock.runUntil(START + 10 * MINUTE);
      const samples = delivered(deviceId);
      const firstBoot = samples.filter((s) => s.boot === 1).map((s) => s.seq);
      // Committed before the cut: seq 0..1 sent online, 2..5 in flash; 6..7 were being written.
      assert.deepEqual(firstBoot, [0, 1, 2, 3, 4, 5]);
      // The second boot's batches were stored behind the torn record and replayed too.
      assert.ok(samples.filter((s) => s.boot === 2).length >= 10);
    } finally {
      await device.stop();
    }
  });
}

test("power cuts torn into flash writes across a ring wrap: never a garbled, repeated or reordered batch", async () => {
  for (const write of SWEEP) {
    const deviceId = `f-sweep-${write}`;
    const clock = new VirtualClock({ start: START });
    broker.setReachable(deviceId, false);
    // Two sectors: offline for 15 minutes the ring wraps, so the tears also hit sector erases and headers.
    const device = await startSimDevice({
      deviceId,
      token: TOKENS.get(deviceId) ?? "",
      mqttUrl: broker.url,
      stateDir,
      flashBytes: 8192,
      sampleIntervalMs: 10 * SECOND,
      samplesPerBatch: 2,
      seed: 1000 + write,
      clock,
    });
    try {
      await clock.runUntil(START + 5 * MINUTE);
      await device.faults.powerLoss({ atFlashWrite: write, offMs: 3 * SECOND });
      await clock.runUntil(START + 15 * MINUTE);
      broker.setReachable(deviceId, true);
      await clock.runUntil(START + 30 * MINUTE);
    } finally {
      await device.stop();
    }
    assert.equal(device.powerCycles, 1, `tear at write ${write}`);
    // delivered() fails on a batch that does not parse or validate.
    const samples = delivered(deviceId);
    // The small ring overflows while offline (the oldest batches are dropped and counted), so boot 1
    // may have nothing left by the time the broker is back; what arrives must still be sound.
    assert.ok(
      samples.some((s) => s.boot === 2),
      `tear at write ${write}: the second boot delivered nothing`,
    );
    for (const boot of [1, 2]) {
      const seqs = samples.filter((s) => s.boot === boot).map((s) => s.seq);
      seqs.forEach((seq, index) => {
        if (index > 0) assert.ok(seq > (seqs[index - 1] as number), `tear at write ${write}: boot ${boot} seq ${seq}`);
      });
    }
  }
});
