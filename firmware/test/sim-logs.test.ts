// Structured logs leave the simulated device on d/{id}/log as LogBatch payloads, and the log ring
// in flash keeps the records of a boot that ended offline (a watchdog reset) until they are shipped.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type LogRecord, validateLogBatch } from "@kestrel/wire";
import { startSimDevice } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { waitUntil } from "./wait.ts";

const DEVICE = "log-a";

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(new Map([[DEVICE, "token-log-a"]]));
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-sim-logs-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function shippedRecords(): LogRecord[] {
  return broker.published
    .filter((message) => message.topic === `d/${DEVICE}/log`)
    .flatMap((message) => {
      assert.equal(message.qos, 1);
      const parsed = validateLogBatch(JSON.parse(message.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value.records;
    });
}

function shipped(match: (record: LogRecord) => boolean): LogRecord | undefined {
  return shippedRecords().find(match);
}

test("records ship to d/{id}/log, and a boot's last records survive a reset while offline", async (t) => {
  const device = await startSimDevice({
    deviceId: DEVICE,
    token: "token-log-a",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 100,
    samplesPerBatch: 1,
    settings: { watchdogTimeoutMs: 1_000 },
  });
  t.after(() => device.stop());

  await waitUntil(() => shipped((r) => r.msg === "mqtt connected") !== undefined, "the first records shipped");
  const bootRecord = shipped((r) => r.msg === "boot");
  assert.equal(bootRecord?.boot, 1);
  assert.equal(bootRecord?.tag, "main");
  assert.equal(bootRecord?.level, "info");
  assert.equal(bootRecord?.reset, "power-on");

  broker.setReachable(DEVICE, false);
  device.hang("sampling");
  await waitUntil(() => device.restarts === 1, "the watchdog reset", 15_000);
  assert.equal(
    shipped((r) => r.tag === "main" && r.msg.startsWith("watchdog:")),
    undefined,
    "not sent while offline",
  );

  broker.setReachable(DEVICE, true);
  await waitUntil(
    () => shipped((r) => r.boot === 2 && r.msg === "mqtt connected") !== undefined,
    "records of the second boot",
    20_000,
  );
  const expired = shipped((r) => r.msg.startsWith("watchdog:"));
  assert.equal(expired?.boot, 1, "logged by the boot that hung, kept in flash across the reset");
  assert.equal(expired?.level, "error");
  assert.equal(expired?.subsystem, "sampling");
  const ids = shippedRecords().map((r) => `${r.boot}/${r.seq}`);
  assert.equal(new Set(ids).size, ids.length, "each record is shipped once");
});
