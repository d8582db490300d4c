// End to end: a simulated device's log records reach the cloud's logs API through the gateway; when
// its sampling task hangs, its software watchdog reboots it, and the cloud then shows reset reason
// "watchdog" for that device, and the watchdog's own log record from before the reset.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DeviceView, LogList } from "@kestrel/cloud";
import { type Platform, startPlatform } from "../src/platform.ts";
import { CloudApi, silent, tempDir, until } from "./helpers.ts";

describe("watchdog and logs end to end", () => {
  let platform: Platform;
  let api: CloudApi;

  before(async () => {
    platform = await startPlatform({
      dataDir: await tempDir("watchdog-e2e"),
      deviceCount: 1,
      sampleIntervalMs: 200,
      samplesPerBatch: 1,
      deviceSettings: { watchdogTimeoutMs: 1_000 },
      logger: silent,
    });
    api = new CloudApi(platform.cloudUrl);
    await api.login(platform.credentials.admin.email, platform.credentials.admin.password);
  });

  after(async () => {
    await platform?.stop();
  });

  const logRecord = (deviceId: string, match: (record: LogList["items"][number]) => boolean) =>
    until(async () => {
      const list = (await api.request("GET", `/api/devices/${deviceId}/logs?limit=1000`)) as LogList;
      return list.items.find(match);
    }, "a log record in the cloud");

  test("the device's log records are visible in the cloud's logs API", async () => {
    const [device] = platform.devices;
    assert.ok(device);
    const boot = await logRecord(device.deviceId, (record) => record.msg === "boot");
    assert.equal(boot.boot, 1);
    assert.equal(boot.level, "info");
    assert.equal(boot.tag, "main");
    assert.equal(boot.fields.deviceId, device.deviceId);
    const warnings = (await api.request("GET", `/api/devices/${device.deviceId}/logs?level=warn`)) as LogList;
    assert.ok(warnings.items.every((record) => record.level === "warn" || record.level === "error"));
  });

  test("a hung sampling task leads to a watchdog reboot that the cloud shows", async () => {
    const [device] = platform.devices;
    assert.ok(device);
    const path = `/api/devices/${device.deviceId}`;
    const first = await until(async () => {
      const view = (await api.request("GET", path)) as DeviceView;
      return view.boot === 1 && view.online ? view : undefined;
    }, "the device's first state in the cloud");
    assert.equal(first.reset, "power-on");
    assert.equal(first.mode, "normal");

    device.hang("sampling");
    const rebooted = await until(async () => {
      const view = (await api.request("GET", path)) as DeviceView;
      return view.boot === 2 && view.online ? view : undefined;
    }, "the state after the watchdog reboot");
    assert.equal(rebooted.reset, "watchdog");
    assert.equal(rebooted.mode, "normal");
    assert.equal(device.restarts, 1);
    const expired = await logRecord(device.deviceId, (record) => record.msg.startsWith("watchdog:"));
    assert.equal(expired.boot, 1);
    assert.equal(expired.level, "error");
    assert.equal(expired.fields.subsystem, "sampling");
  });
});
