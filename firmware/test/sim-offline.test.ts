// Store-and-forward on the device: batches that cannot be sent go to the flash ring, survive a power
// cut, and are replayed in order once the broker is back; a full ring drops the oldest and says so
// in the state. Device time runs 60 times faster than real time (FastClock).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { validateDeviceState, validateTelemetryBatch } from "@kestrel/wire";
import { FastClock, FLASH_SECTOR_BYTES, startSimDevice } from "../sim/index.ts";
import { type Delivered, firstArrivals } from "./arrivals.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";
import { waitUntil } from "./wait.ts";

/** The flash ring's bound on batches in flight (IN_FLIGHT_MAX in firmware/src/flash-ring.ts, an XS module). */
const IN_FLIGHT_MAX = 16;

const RATE = 60;
const MINUTE = 60_000;
const DEVICES = ["off-a", "off-b", "off-c", "off-d"];
const TOKENS = new Map(DEVICES.map((id) => [id, `token-${id}`]));

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-offline-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

/** Every sample the broker received from deviceId, at its first arrival, in arrival order. */
function delivered(deviceId: string): Delivered[] {
  return firstArrivals(
    broker.published
      .filter((m) => m.topic === `d/${deviceId}/telemetry`)
      .flatMap((m) => {
        const parsed = validateTelemetryBatch(JSON.parse(m.payload));
        assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
        return parsed.value.samples.map((sample) => ({ ...sample, boot: parsed.value.boot }));
      }),
  );
}

function assertContiguous(samples: Delivered[], what: string): void {
  samples.forEach((sample, index) => {
    assert.equal(sample.seq, (samples[0] as Delivered).seq + index, `${what}: seq ${sample.seq} at position ${index}`);
    if (index > 0) assert.ok(sample.ts > (samples[index - 1] as Delivered).ts, `${what}: ts increases`);
  });
}

/** In order, nothing twice: gaps are allowed (dropped batches), going back is not. */
function assertIncreasing(samples: Delivered[]): void {
  samples.forEach((sample, index) => {
    if (index === 0) return;
    const previous = samples[index - 1] as Delivered;
    assert.ok(sample.seq > previous.seq, `seq ${sample.seq} after ${previous.seq}`);
    assert.ok(sample.ts > previous.ts, "ts increases");
  });
}

function options(deviceId: string, clock: FastClock, logger = captureLogs().logger) {
  return {
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 1000,
    samplesPerBatch: 5,
    clock,
    logger,
  };
}

test("a device offline for 10 virtual minutes replays its buffer in order after reconnecting", async (t) => {
  const clock = new FastClock(RATE);
  const { logger, entries } = captureLogs();
  const device = await startSimDevice(options("off-a", clock, logger));
  t.after(() => device.stop());
  await device.connected;
  await waitUntil(() => delivered("off-a").length >= 10, "samples while online");

  broker.setReachable("off-a", false);
  const wentOffline = clock.now();
  await waitUntil(() => clock.now() - wentOffline >= 10 * MINUTE, "10 virtual minutes offline", 30_000);
  const sentBeforeReturn = delivered("off-a").length;
  const cameBack = clock.now();
  broker.setReachable("off-a", true);

  // A sample taken after the return arrives behind the whole buffer, so seeing one means the replay is done.
  await waitUntil(
    () => delivered("off-a").some((sample) => sample.ts > cameBack),
    "the replayed buffer and a fresh sample",
    30_000,
  );
  const samples = delivered("off-a");
  assertContiguous(samples, "boot 1");
  assert.ok(samples.every((sample) => sample.boot === 1));
  const offline = samples.filter((sample) => sample.ts >= wentOffline && sample.ts <= cameBack);
  // One sample a device second; on a heavily loaded host a late timer fires once instead of twice.
  assert.ok(offline.length >= 500, `${offline.length} samples cover the 10 offline minutes`);
  assert.ok((offline[0]?.ts as number) - wentOffline < 10_000, "from the start of the outage");
  assert.ok(cameBack - (offline.at(-1)?.ts as number) < 10_000, "to its end");
  const reconnected = entries.filter((entry) => entry.msg === "mqtt connected").at(-1);
  assert.ok(
    (reconnected?.fields.queued as number) >= Math.floor(offline.length / 5) - 1,
    `the offline batches waited in flash (${String(reconnected?.fields.queued)})`,
  );
  const state = await broker.waitFor(
    (m) => m.topic === "d/off-a/state" && m.clientId === "off-a" && JSON.parse(m.payload).uptime >= 600,
  );
  assert.equal(JSON.parse(state.payload).dropped, 0, "nothing was dropped");
  t.diagnostic(
    `${offline.length} samples taken in 10 offline device minutes, ${samples.length - sentBeforeReturn} delivered after the return`,
  );
});

test("buffered batches survive a power cut and are sent before the new boot's", async (t) => {
  const clock = new FastClock(RATE);
  const first = await startSimDevice(options("off-b", clock));
  await first.connected;
  await waitUntil(() => delivered("off-b").length >= 10, "samples while online");
  broker.setReachable("off-b", false);
  const cutAt = clock.now();
  await waitUntil(() => clock.now() - cutAt >= 2 * MINUTE, "2 virtual minutes offline", 30_000);
  await first.stop();
  const beforeReturn = delivered("off-b").length;

  broker.setReachable("off-b", true);
  const second = await startSimDevice(options("off-b", clock));
  t.after(() => second.stop());
  await waitUntil(() => delivered("off-b").some((sample) => sample.boot === 2), "telemetry of boot 2", 30_000);
  const samples = delivered("off-b");
  const boot1 = samples.filter((sample) => sample.boot === 1);
  assertContiguous(boot1, "boot 1");
  assert.ok(
    boot1.length - beforeReturn >= 50,
    `the offline batches of boot 1 were replayed (${boot1.length - beforeReturn})`,
  );
  const firstOfBoot2 = samples.findIndex((sample) => sample.boot === 2);
  assert.equal(firstOfBoot2, boot1.length, "every boot 1 sample arrived before the first of boot 2");
  assert.equal(samples[firstOfBoot2]?.seq, 0);
});

test("a full ring drops whole oldest batches, delivers the rest in order, and the state counts what is missing", async (t) => {
  const clock = new FastClock(RATE);
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({ ...options("off-c", clock, logger), flashBytes: 3 * FLASH_SECTOR_BYTES });
  t.after(() => device.stop());
  await device.connected;
  await waitUntil(() => delivered("off-c").length >= 5, "samples while online");
  const online = delivered("off-c").length;
  broker.setReachable("off-c", false);
  await waitUntil(
    () => entries.some((entry) => entry.msg === "flash buffer full, dropped the oldest samples"),
    "an overflow",
    30_000,
  );
  const offlineFrom = clock.now();
  await waitUntil(() => clock.now() - offlineFrom >= MINUTE, "another virtual minute", 30_000);
  const cameBack = clock.now();
  broker.setReachable("off-c", true);

  // A sample taken after the return arrives behind whatever the ring kept: the replay is over.
  await waitUntil(() => delivered("off-c").some((sample) => sample.ts > cameBack), "the replay", 30_000);
  const samples = delivered("off-c");
  assertContiguous(samples.slice(0, online), "before the outage");
  assertIncreasing(samples);
  const lastSeq = samples.at(-1)?.seq as number;
  const missing = lastSeq + 1 - samples.length;
  assert.ok(missing > 0, "the outage outlasted the ring");
  assert.equal(missing % 5, 0, "whole batches are dropped");
  // The device publishes its state at every reconnect and after every drop; the last one counts them all. A batch
  // in flight when the link went may have reached the broker before its ack was lost: if the ring then drops it,
  // the device counts it, not knowing. So the count is the missing samples plus at most the batches in flight.
  const states = (): number[] =>
    broker.published
      .filter((m) => m.topic === "d/off-c/state" && m.clientId === "off-c")
      .map((m) => {
        const state = validateDeviceState(JSON.parse(m.payload));
        assert.ok(state.ok);
        return state.value.dropped ?? 0;
      });
  await waitUntil(() => (states().at(-1) ?? 0) >= missing, `a state reporting at least ${missing} dropped samples`);
  const overcounted = (states().at(-1) as number) - missing;
  assert.equal(overcounted % 5, 0, "whole batches are counted");
  assert.ok(
    overcounted <= IN_FLIGHT_MAX * 5,
    `${overcounted} counted beyond the missing ones, at most the batches in flight`,
  );
  const queued = entries.filter((entry) => entry.msg === "mqtt connected").at(-1)?.fields.queued as number;
  assert.ok(queued > 0, "batches were kept in flash and replayed");
});

test("a batch whose telemetry ack never comes is sent again after 30 s, and kept until one does", async (t) => {
  const clock = new FastClock(RATE);
  const { logger, entries } = captureLogs();
  const device = await startSimDevice(options("off-d", clock, logger));
  t.after(() => device.stop());
  await device.connected;
  await waitUntil(() => delivered("off-d").length >= 5, "samples while acked");
  const telemetry = () => broker.published.filter((m) => m.topic === "d/off-d/telemetry").map((m) => m.payload);
  broker.withholdAcks("off-d", true);
  const unackedFrom = telemetry().length;
  const resent = () => entries.filter((entry) => entry.msg === "telemetry not acknowledged in time, sending it again");
  await waitUntil(() => resent().length > 0, "the ack timeout", 30_000);
  // The first batch sent without an ack goes out again, unchanged, once the 30 s passed.
  await waitUntil(() => {
    const unacked = telemetry().slice(unackedFrom);
    return unacked.indexOf(unacked[0] as string, 1) > 0;
  }, "the first unacknowledged batch again");

  broker.withholdAcks("off-d", false);
  const released = clock.now();
  await waitUntil(() => delivered("off-d").some((sample) => sample.ts > released), "a batch after the acks are back");
  const timeoutsThen = resent().length;
  const quietFrom = clock.now();
  await waitUntil(() => clock.now() - quietFrom >= MINUTE, "a virtual minute with acks", 30_000);
  assert.equal(resent().length, timeoutsThen, "acked again, nothing more is resent");
  assertContiguous(delivered("off-d"), "nothing lost while acks were missing");
});
