// Commands on d/{id}/cmd reach the firmware running in XS: each is acked accepted then done or
// failed, runs at most once per id (across a reboot too), and expired or malformed ones are refused.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CommandAck, type DeviceCommand, validateCommandAck, validateTelemetryBatch } from "@kestrel/wire";
import { type SimDevice, startSimDevice } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { type CapturedLog, captureLogs } from "./log-capture.ts";
import { waitUntil } from "./wait.ts";

const DEVICES = ["cmd-a", "cmd-b", "cmd-c", "cmd-d", "cmd-e"];
const TOKENS = new Map(DEVICES.map((id) => [id, `token-${id}`]));
const LED_PIN = 2;

let broker: TestBroker;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-cmd-"));
});

after(async () => {
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

async function bootDevice(
  deviceId: string,
  t: { after(fn: () => Promise<void>): void },
  sampleIntervalMs = 50,
): Promise<{ device: SimDevice; entries: CapturedLog[] }> {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs,
    samplesPerBatch: 1,
    logger,
  });
  t.after(() => device.stop());
  await device.connected;
  await broker.waitForSubscription(deviceId, `d/${deviceId}/cmd`);
  return { device, entries };
}

function acksOf(deviceId: string, id: string): CommandAck[] {
  return broker.published
    .filter((m) => m.topic === `d/${deviceId}/cmd/ack`)
    .map((m) => {
      assert.equal(m.qos, 1);
      const parsed = validateCommandAck(JSON.parse(m.payload));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value;
    })
    .filter((ack) => ack.id === id);
}

async function send(deviceId: string, command: Omit<DeviceCommand, "v"> | string, acks = 2): Promise<CommandAck[]> {
  const payload = typeof command === "string" ? command : JSON.stringify({ v: 1, ...command });
  const id = typeof command === "string" ? (/"id":"([^"]+)"/.exec(command)?.[1] ?? "") : command.id;
  const before = acksOf(deviceId, id).length;
  await broker.publish(`d/${deviceId}/cmd`, payload);
  await waitUntil(() => acksOf(deviceId, id).length >= before + acks, `${acks} acks for ${id}`);
  return acksOf(deviceId, id).slice(before);
}

function executions(entries: CapturedLog[], id: string): number {
  return entries.filter((entry) => entry.msg === "command executed" && entry.fields.id === id).length;
}

test("ping is acked accepted then done with the uptime, and a repeated id is answered without running again", async (t) => {
  const { entries } = await bootDevice("cmd-a", t);
  const acks = await send("cmd-a", { id: "ping-1", name: "ping" });
  assert.deepEqual(
    acks.map((ack) => ack.status),
    ["accepted", "done"],
  );
  assert.equal(typeof acks[1]?.result?.uptime, "number");
  assert.equal(acks[1]?.result?.boot, 1);

  const repeated = await send("cmd-a", { id: "ping-1", name: "ping" }, 1);
  assert.deepEqual(repeated, [acks[1]], "the repeat gets the last ack again");
  assert.equal(executions(entries, "ping-1"), 1, "executed once");
});

test("expired, unknown and malformed commands are refused with a reason", async (t) => {
  const { entries } = await bootDevice("cmd-b", t);
  const expired = await send("cmd-b", { id: "old-1", name: "ping", expiresAt: Date.now() - 1000 }, 1);
  assert.deepEqual(expired, [{ v: 1, id: "old-1", status: "failed", reason: "expired" }]);
  assert.equal(executions(entries, "old-1"), 0);

  const unknown = await send("cmd-b", '{"v":1,"id":"bad-1","name":"self-destruct"}', 1);
  assert.equal(unknown[0]?.status, "failed");
  assert.match(unknown[0]?.reason ?? "", /^unknown_command/);

  const badParams = await send("cmd-b", { id: "cfg-bad", name: "set-config", params: { sample_interval_ms: 5 } });
  assert.deepEqual(
    badParams.map((ack) => ack.status),
    ["accepted", "failed"],
  );
  assert.match(badParams[1]?.reason ?? "", /sample_interval_ms must be an integer 10\.\.3600000/);

  // Not JSON at all: nothing to ack, the device logs it and keeps serving.
  await broker.publish("d/cmd-b/cmd", "\u0000garbage");
  await waitUntil(() => entries.some((entry) => entry.msg === "invalid command"), "the invalid command log");
  const later = await send("cmd-b", { id: "ping-after", name: "ping" });
  assert.equal(later[1]?.status, "done");
});

test("set-config changes the sampling interval and log level at run time and keeps them across a reboot", async (t) => {
  const { device, entries } = await bootDevice("cmd-c", t);
  const acks = await send("cmd-c", {
    id: "cfg-1",
    name: "set-config",
    params: { sample_interval_ms: 200, log_level: "warn", temperature_low: -10, temperature_high: 60 },
  });
  assert.deepEqual(acks[1], {
    v: 1,
    id: "cfg-1",
    status: "done",
    result: { sample_interval_ms: 200, log_level: "warn", temperature_low: -10, temperature_high: 60 },
  });
  const preferences = JSON.parse(readFileSync(join(stateDir, "cmd-c.preferences.json"), "utf8"));
  assert.deepEqual(JSON.parse(preferences.kestrel.config), {
    sample_interval_ms: 200,
    log_level: "warn",
    temperature_low: -10,
    temperature_high: 60,
  });

  const timestamps = (): number[] =>
    broker.published
      .filter((m) => m.topic === "d/cmd-c/telemetry")
      .flatMap((m) => {
        const parsed = validateTelemetryBatch(JSON.parse(m.payload));
        assert.ok(parsed.ok);
        return parsed.value.samples.map((sample) => sample.ts);
      });
  // Timers fire on the simulator's real-time clock, so single gaps jitter; the mean shows the interval.
  const meanGap = (ts: number[]): number => ((ts.at(-1) as number) - (ts[0] as number)) / (ts.length - 1);
  const from = timestamps().length + 1;
  await waitUntil(() => timestamps().length >= from + 6, "six samples at the new interval");
  const gap = meanGap(timestamps().slice(from));
  assert.ok(gap >= 170 && gap <= 260, `samples follow the 200 ms interval (mean gap ${gap} ms), not the 50 ms one`);

  const infoBefore = entries.filter((entry) => entry.level === "info" && entry.fields.deviceTs !== undefined).length;
  await send("cmd-c", { id: "ping-quiet", name: "ping" });
  const infoAfter = entries.filter((entry) => entry.level === "info" && entry.fields.deviceTs !== undefined).length;
  assert.equal(infoAfter, infoBefore, "info records are suppressed at log level warn");

  await send("cmd-c", { id: "reboot-c", name: "reboot" });
  await waitUntil(() => device.restarts === 1, "the restart");
  await broker.waitFor((m) => m.topic === "d/cmd-c/state" && m.payload.includes('"boot":2'));
  const resumed = timestamps().length + 1;
  await waitUntil(() => timestamps().length >= resumed + 6, "samples after the reboot");
  const after = meanGap(timestamps().slice(resumed));
  assert.ok(after >= 170 && after <= 260, `the interval survived the reboot (mean gap ${after} ms)`);
});

test("identify blinks the status LED and ends with it off", async (t) => {
  const { device } = await bootDevice("cmd-d", t);
  const acks = await send("cmd-d", { id: "blink-1", name: "identify", params: { seconds: 1 } });
  assert.deepEqual(acks[1]?.result, { seconds: 1 });
  await waitUntil(() => device.gpio.levels.length >= 5, "the blinking");
  const levels = device.gpio.levels;
  assert.ok(levels.every((level) => level.pin === LED_PIN));
  assert.deepEqual(
    levels.map((level) => level.value),
    [1, 0, 1, 0, 0],
    "on, blinking every 250 ms, off at the end",
  );
  const span = (levels.at(-1)?.at as number) - (levels[0]?.at as number);
  assert.ok(span >= 1000, `it blinks for the requested second of device time (${span} ms)`);
  const refused = await send("cmd-d", { id: "blink-2", name: "identify", params: { seconds: 600 } });
  assert.equal(refused[1]?.status, "failed");
});

test("reboot acks done, restarts with reset 'command', and a redelivered reboot is not run again", async (t) => {
  const { device, entries } = await bootDevice("cmd-e", t);
  const acks = await send("cmd-e", { id: "reboot-1", name: "reboot" });
  assert.deepEqual(
    acks.map((ack) => ack.status),
    ["accepted", "done"],
  );
  const state = await broker.waitFor((m) => m.topic === "d/cmd-e/state" && m.payload.includes('"boot":2'));
  assert.equal(JSON.parse(state.payload).reset, "command");
  assert.equal(device.restarts, 1);
  await broker.waitForSubscription("cmd-e", "d/cmd-e/cmd");
  await waitUntil(
    () => entries.filter((entry) => entry.msg === "mqtt connected").length === 2,
    "the reconnect after the restart",
  );

  const repeated = await send("cmd-e", { id: "reboot-1", name: "reboot" }, 1);
  assert.deepEqual(repeated, [acks[1]], "the ack remembered in flash is sent again");
  await new Promise((resolve) => setTimeout(resolve, 800));
  assert.equal(device.restarts, 1, "no second restart");
  assert.equal(executions(entries, "reboot-1"), 1);
});
