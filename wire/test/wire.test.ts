// The wire contract accepts what devices legitimately send and refuses the
// rest with a stable code and a message that names the offending field.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  isMetricName,
  LIMITS,
  parseCommandAck,
  parseDeviceCommand,
  parseDeviceState,
  parsePluginMetricName,
  parseTelemetryAck,
  parseTelemetryBatch,
  parseTopic,
  pluginMetricName,
  topics,
  validateDeviceState,
} from "../src/index.ts";

const TS = 1_764_000_000_000;
const sample = (seq: number) => ({ seq, ts: TS + seq, m: { temperature: 21.5, pressure: 100_653.27 } });

describe("topics", () => {
  test("round-trip through parseTopic", () => {
    assert.deepEqual(parseTopic(topics.telemetry("dev-1")), { deviceId: "dev-1", kind: "telemetry" });
    assert.deepEqual(parseTopic(topics.commandAck("A_b-9")), { deviceId: "A_b-9", kind: "cmd/ack" });
    assert.deepEqual(parseTopic(topics.telemetryAck("dev-1")), { deviceId: "dev-1", kind: "telemetry/ack" });
    assert.equal(topics.telemetryAck("dev-1"), "d/dev-1/telemetry/ack");
  });

  test("anything outside d/{id}/{known kind} is not a device topic", () => {
    for (const topic of ["x/dev/telemetry", "d/dev/other", "d/+/telemetry", "d//state", "d/dev", "d/dev/state/x"]) {
      assert.equal(parseTopic(topic), undefined, topic);
    }
  });
});

describe("telemetry ack", () => {
  test("a valid ack is returned with only the known fields", () => {
    const parsed = parseTelemetryAck(JSON.stringify({ v: 1, boot: 7, seq: 41, extra: true }));
    assert.deepEqual(parsed, { ok: true, value: { v: 1, boot: 7, seq: 41 } });
  });

  const refusals: Array<[string, unknown, string]> = [
    ["not JSON", "{", "invalid_json"],
    ["an array", [], "invalid_telemetry_ack"],
    ["another version", { v: 2, boot: 1, seq: 1 }, "unsupported_version"],
    ["no boot", { v: 1, seq: 1 }, "invalid_telemetry_ack"],
    ["a negative seq", { v: 1, boot: 1, seq: -1 }, "invalid_telemetry_ack"],
    ["a fractional seq", { v: 1, boot: 1, seq: 1.5 }, "invalid_telemetry_ack"],
    ["a seq past 2^32-1", { v: 1, boot: 1, seq: 2 ** 32 }, "invalid_telemetry_ack"],
  ];
  for (const [what, payload, code] of refusals) {
    test(`refuses ${what} with ${code}`, () => {
      const parsed = parseTelemetryAck(typeof payload === "string" ? payload : JSON.stringify(payload));
      assert.equal(parsed.ok ? "ok" : parsed.error.code, code);
    });
  }
});

describe("telemetry batch", () => {
  test("a valid batch is returned with only the known fields", () => {
    const parsed = parseTelemetryBatch(JSON.stringify({ v: 1, boot: 3, samples: [sample(0), sample(1)], extra: 1 }));
    assert.equal(parsed.ok, true);
    assert.deepEqual(parsed.ok && parsed.value, { v: 1, boot: 3, samples: [sample(0), sample(1)] });
  });

  const refusals: Array<[string, unknown, string]> = [
    ["not JSON", "{", "invalid_json"],
    ["wrong version", { v: 2, boot: 0, samples: [sample(0)] }, "unsupported_version"],
    ["negative boot", { v: 1, boot: -1, samples: [sample(0)] }, "invalid_batch"],
    ["no samples", { v: 1, boot: 0, samples: [] }, "invalid_batch"],
    [
      "too many samples",
      { v: 1, boot: 0, samples: Array.from({ length: LIMITS.samplesPerBatch + 1 }, (_, i) => sample(i)) },
      "invalid_batch",
    ],
    ["fractional seq", { v: 1, boot: 0, samples: [{ ...sample(0), seq: 1.5 }] }, "invalid_sample"],
    ["unset clock", { v: 1, boot: 0, samples: [{ ...sample(0), ts: 1000 }] }, "invalid_sample"],
    ["operator-like metric", { v: 1, boot: 0, samples: [{ seq: 0, ts: TS, m: { $gt: 1 } }] }, "invalid_metric"],
    ["dotted metric", { v: 1, boot: 0, samples: [{ seq: 0, ts: TS, m: { "a.b": 1 } }] }, "invalid_metric"],
    ["string value", { v: 1, boot: 0, samples: [{ seq: 0, ts: TS, m: { t: "1" } }] }, "invalid_metric"],
    ["no metrics", { v: 1, boot: 0, samples: [{ seq: 0, ts: TS, m: {} }] }, "invalid_sample"],
  ];
  for (const [name, body, code] of refusals) {
    test(`refuses ${name} with ${code}`, () => {
      const parsed = parseTelemetryBatch(typeof body === "string" ? body : JSON.stringify(body));
      assert.equal(parsed.ok, false);
      assert.equal(!parsed.ok && parsed.error.code, code);
    });
  }

  test("refuses a payload over the size limit before parsing it", () => {
    const parsed = parseTelemetryBatch(" ".repeat(LIMITS.payloadBytes + 1));
    assert.equal(!parsed.ok && parsed.error.code, "payload_too_large");
  });

  test("the error names the offending sample", () => {
    const parsed = parseTelemetryBatch(JSON.stringify({ v: 1, boot: 0, samples: [sample(0), { seq: "x" }] }));
    assert.match(!parsed.ok ? parsed.error.message : "", /samples\[1\]\.seq/);
  });
});

describe("device state", () => {
  test("the last will and a full state are valid", () => {
    assert.deepEqual(parseDeviceState('{"v":1,"online":false}'), { ok: true, value: { v: 1, online: false } });
    const full = {
      v: 1,
      online: true,
      fw: "0.1.0",
      boot: 2,
      uptime: 30,
      heap: 20000,
      rssi: -61,
      reset: "watchdog",
      dropped: 15,
    };
    assert.deepEqual(parseDeviceState(JSON.stringify(full)), { ok: true, value: full });
  });

  test("refuses a missing online flag, an unknown reset reason, a positive rssi and a negative dropped count", () => {
    for (const bad of [
      { v: 1 },
      { v: 1, online: true, reset: "magic" },
      { v: 1, online: true, rssi: 5 },
      { v: 1, online: true, dropped: -1 },
    ]) {
      const parsed = parseDeviceState(JSON.stringify(bad));
      assert.equal(parsed.ok, false, JSON.stringify(bad));
    }
  });
});

describe("commands", () => {
  test("a command and its acks round-trip", () => {
    const command = { v: 1, id: "c-1", name: "set-config", params: { sample_interval_ms: 500 }, expiresAt: TS };
    assert.deepEqual(parseDeviceCommand(JSON.stringify(command)), { ok: true, value: command });
    const ack = { v: 1, id: "c-1", status: "failed", reason: "expired" };
    assert.deepEqual(parseCommandAck(JSON.stringify(ack)), { ok: true, value: ack });
  });

  test("refuses unknown names, bad ids, nested params and unknown ack statuses", () => {
    const refused: Array<[string, string]> = [
      [JSON.stringify({ v: 1, id: "c", name: "format-flash" }), "unknown_command"],
      [JSON.stringify({ v: 1, id: "a/b", name: "ping" }), "invalid_command"],
      [JSON.stringify({ v: 1, id: "c", name: "ping", params: { a: { b: 1 } } }), "invalid_command"],
      [JSON.stringify({ v: 1, id: "c", name: "ping", params: { $where: 1 } }), "invalid_command"],
    ];
    for (const [text, code] of refused) {
      const parsed = parseDeviceCommand(text);
      assert.equal(!parsed.ok && parsed.error.code, code, text);
    }
    const ack = parseCommandAck(JSON.stringify({ v: 1, id: "c", status: "queued" }));
    assert.equal(!ack.ok && ack.error.code, "invalid_ack");
  });
});

test("plugin metric names carry the plugin's name before '__', and stay valid telemetry metric names", () => {
  const name = pluginMetricName("smoothing", "temperature_avg");
  assert.equal(name, "smoothing__temperature_avg");
  assert.ok(isMetricName(name));
  assert.deepEqual(parsePluginMetricName(name), { plugin: "smoothing", metric: "temperature_avg" });
  assert.equal(parsePluginMetricName("sht3x_temperature"), undefined);
  assert.ok(isMetricName(pluginMetricName("a".repeat(12), "b".repeat(16))), "the longest names fit a metric name");
});

test("the plugin states a device reports are validated", () => {
  const status = {
    name: "spin",
    version: "1.0.0",
    state: "failed",
    reason: "budget: …",
    calls: 3,
    errors: 1,
    fuel: 100000,
  };
  const state = validateDeviceState({ v: 1, online: true, plugins: [status] });
  assert.ok(state.ok && state.value.plugins?.[0]?.reason === "budget: …");
  assert.ok(!validateDeviceState({ v: 1, online: true, plugins: [{ ...status, state: "crashed" }] }).ok);
  assert.equal(parseTopic("d/dev-1/plugin"), undefined, "plugins come through the artifact topics");
});
