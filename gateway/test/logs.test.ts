// Device logs through the gateway: a LogBatch on d/{id}/log is validated, queued durably and
// forwarded to the cloud like telemetry; a malformed one is dropped and counted.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import type { Gateway } from "../src/gateway.ts";
import { type CloudPeer, startCloudPeer, startGatewayFor } from "./cloud-peer.ts";
import { until } from "./until.ts";

const DEVICES = { "log-dev": "token-log-secret" };

describe("device logs through the gateway", () => {
  let cloud: CloudPeer;
  let gateway: Gateway;
  let client: MqttClient;

  before(async () => {
    cloud = await startCloudPeer(DEVICES);
    gateway = await startGatewayFor(cloud);
    client = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
      clientId: "log-dev",
      username: "log-dev",
      password: DEVICES["log-dev"],
      reconnectPeriod: 0,
    });
  });

  after(async () => {
    await client.endAsync(true).catch(() => undefined);
    await gateway.stop();
    await cloud.close();
  });

  const forwardedLogs = () => cloud.ingests.flatMap((request) => request.logs ?? []);

  test("a log batch reaches the cloud unchanged, with the time the gateway received it", async () => {
    const batch = {
      v: 1,
      dropped: 2,
      records: [
        { boot: 4, seq: 0, ts: 1_764_000_000_000, level: "info", tag: "main", msg: "boot", reset: "watchdog" },
        { boot: 4, seq: 1, ts: 1_764_000_000_100, level: "error", tag: "bmp280", msg: "read failed", failures: 3 },
      ],
    };
    const before = Date.now();
    await client.publishAsync("d/log-dev/log", JSON.stringify(batch), { qos: 1 });
    const [forwarded] = await until(() => forwardedLogs().length > 0 && forwardedLogs(), "the forwarded log batch");
    assert.equal(forwarded?.deviceId, "log-dev");
    assert.deepEqual(forwarded?.batch, batch);
    assert.ok(Number(forwarded?.receivedAt) >= before && Number(forwarded?.receivedAt) <= Date.now());
    assert.equal(await gateway.metrics.value("kestrel_gateway_messages_in_total", { kind: "log" }), 1);
  });

  test("a malformed log batch is dropped and counted, and the device keeps its connection", async () => {
    const count = forwardedLogs().length;
    const bad = { v: 1, records: [{ boot: 1, seq: 0, ts: 1, level: "loud", tag: "main", msg: "x" }] };
    await client.publishAsync("d/log-dev/log", JSON.stringify(bad), { qos: 1 });
    const good = { v: 1, records: [{ boot: 1, seq: 1, ts: 1, level: "warn", tag: "main", msg: "after" }] };
    await client.publishAsync("d/log-dev/log", JSON.stringify(good), { qos: 1 });
    await until(() => forwardedLogs().length > count, "the valid batch after the bad one");
    assert.equal(await gateway.metrics.value("kestrel_gateway_messages_rejected_total", { reason: "invalid_log" }), 1);
    assert.deepEqual(
      forwardedLogs()
        .slice(count)
        .map((item) => item.batch.records[0]?.msg),
      ["after"],
    );
    assert.equal(client.connected, true);
  });
});
