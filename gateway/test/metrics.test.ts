// The gateway's /metrics through prom-client: the names the hand-written renderer had, the new
// forward-latency histogram and process metrics, valid for `promtool check metrics`; what breaks the
// MQTT protocol on the device port, counted by reason; and the log level changed at run time with
// the operations token.

import assert from "node:assert/strict";
import { connect as connectTcp } from "node:net";
import { after, before, describe, test } from "node:test";
import { connectAsync } from "mqtt";
import mqttPacket from "mqtt-packet";
import type { Gateway } from "../src/gateway.ts";
import { GatewayMetrics } from "../src/metrics.ts";
import { type CloudPeer, startCloudPeer, startGatewayFor } from "./cloud-peer.ts";
import { promtoolCheckMetrics } from "./promtool.ts";
import { until } from "./until.ts";

const OPS_TOKEN = "ops-token-0123456789abcdef";

/** Writes bytes to a fresh connection and resolves once the gateway closed it. */
function closedOn(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, "127.0.0.1", () => socket.write(bytes));
    socket.on("close", () => resolve());
    socket.on("error", () => undefined);
  });
}

describe("gateway metrics", () => {
  let cloud: CloudPeer;
  let gateway: Gateway;

  before(async () => {
    cloud = await startCloudPeer({ "dev-a": "token-a-secret" });
    gateway = await startGatewayFor(cloud, { OPS_TOKEN });
  });
  after(async () => {
    await gateway?.stop();
    await cloud?.close();
  });

  test("/metrics keeps the gateway's metric names, adds latency and process metrics, and passes promtool", async () => {
    const device = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
      clientId: "dev-a",
      username: "dev-a",
      password: "token-a-secret",
      reconnectPeriod: 0,
    });
    const batch = { v: 1, boot: 1, samples: [{ seq: 0, ts: 1_764_000_000_000, m: { temperature: 21 } }] };
    await device.publishAsync("d/dev-a/telemetry", JSON.stringify(batch), { qos: 1 });
    await until(() => cloud.ingests.length > 0, "a forwarded batch");
    const response = await fetch(`http://127.0.0.1:${gateway.httpPort}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    for (const name of [
      "kestrel_gateway_connections_total",
      "kestrel_gateway_messages_in_total",
      "kestrel_gateway_forwarded_items_total",
      "kestrel_gateway_connected_clients",
      "kestrel_gateway_queue_depth",
      "kestrel_gateway_queue_bytes",
      "kestrel_gateway_queue_oldest_age_seconds",
      "process_resident_memory_bytes",
      "nodejs_heap_used_bytes",
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), name);
    }
    assert.match(text, /^kestrel_gateway_connections_total\{auth="token"\} 1$/m);
    assert.match(text, /^kestrel_gateway_messages_in_total\{kind="telemetry"\} 1$/m);
    assert.match(text, /^kestrel_gateway_connected_clients 1$/m);
    assert.match(text, /^kestrel_gateway_forward_duration_seconds_count\{outcome="ok"\} [1-9]/m);
    assert.match(text, /^process_cpu_seconds_total /m);
    const check = await promtoolCheckMetrics(text);
    assert.equal(check.code, 0, check.output);
    assert.equal(check.output.trim(), "", "no lint findings");
    await device.endAsync();
  });

  test("packets that break MQTT close their connection and are counted by reason in /metrics", async () => {
    const port = gateway.mqttPort ?? 0;
    const connect = mqttPacket.generate({
      cmd: "connect",
      clientId: "dev-a",
      protocolId: "MQTT",
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
    });
    const wrongName = Buffer.from(connect);
    wrongName.write("MQTX", 4, "latin1");
    await Promise.all([
      // A remaining length of five bytes.
      closedOn(port, Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])),
      // A PUBLISH announcing 256 MiB, over MQTT_MAX_PACKET_BYTES: refused on its header.
      closedOn(port, Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])),
      // A PINGREQ before any CONNECT.
      closedOn(port, Buffer.from([0xc0, 0x00])),
      closedOn(port, wrongName),
    ]);
    const text = await fetch(`http://127.0.0.1:${gateway.httpPort}/metrics`).then((r) => r.text());
    for (const reason of ["malformed_packet", "oversize_packet", "protocol_violation", "bad_protocol"]) {
      assert.match(text, new RegExp(`^kestrel_gateway_messages_rejected_total\\{reason="${reason}"\\} 1$`, "m"));
    }
    const check = await promtoolCheckMetrics(text);
    assert.equal(check.code, 0, check.output);
  });

  test("the log level changes at run time, with the operations token only", async () => {
    const url = `http://127.0.0.1:${gateway.httpPort}/log-level`;
    const put = (level: string, token?: string) =>
      fetch(url, {
        method: "PUT",
        headers: token ? { authorization: `Bearer ${token}` } : {},
        body: JSON.stringify({ level }),
      });
    assert.equal((await put("debug")).status, 401);
    assert.equal((await put("debug", "wrong-token-0123456789abcd")).status, 401);
    assert.equal((await put("loud", OPS_TOKEN)).status, 400);
    const changed = await put("debug", OPS_TOKEN);
    assert.deepEqual(await changed.json(), { level: "debug" });
    const read = await fetch(url, { headers: { authorization: `Bearer ${OPS_TOKEN}` } });
    assert.deepEqual(await read.json(), { level: "debug" });
  });
});

describe("counter series bound once", () => {
  test("increments reach value() and the exposition at a read, and a series with undeclared labels is refused", async () => {
    const metrics = new GatewayMetrics();
    const telemetry = metrics.counter("kestrel_gateway_messages_in_total", { kind: "telemetry" });
    assert.equal(metrics.counter("kestrel_gateway_messages_in_total", { kind: "telemetry" }), telemetry);
    for (let i = 0; i < 3; i++) telemetry.inc();
    metrics.inc("kestrel_gateway_messages_in_total", { kind: "telemetry" }, 2);
    assert.equal(await metrics.value("kestrel_gateway_messages_in_total", { kind: "telemetry" }), 5);
    telemetry.inc(4);
    assert.match(await metrics.render(), /^kestrel_gateway_messages_in_total\{kind="telemetry"\} 9$/m);
    assert.throws(() => metrics.counter("kestrel_gateway_messages_in_total", { reason: "x" }), /has labels kind/);
    assert.throws(() => metrics.counter("kestrel_gateway_queue_depth"), /not a counter/);
  });
});
