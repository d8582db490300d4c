// The gateway as devices and the cloud see it: authentication, ACLs, payload
// validation, forwarding, retries while the cloud is down, malformed packets.

import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { connect as connectTcp } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { type CloudPeer, startCloudPeer } from "./cloud-peer.ts";
import { until } from "./until.ts";

const DEVICES = { "dev-a": "token-a-secret", "dev-b": "token-b-secret", "dev-c": "token-c-secret" };

function batch(boot: number, firstSeq: number, count: number) {
  return {
    v: 1,
    boot,
    samples: Array.from({ length: count }, (_, i) => ({
      seq: firstSeq + i,
      ts: 1_764_000_000_000 + (firstSeq + i) * 1000,
      m: { temperature: 21 + i / 10, pressure: 100_000 + i },
    })),
  };
}

describe("gateway", () => {
  let cloud: CloudPeer;
  let gateway: Gateway;
  let dataDir: string;
  const clients: MqttClient[] = [];

  const device = async (id: string, password: string, extra: object = {}) => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
      clientId: id,
      username: id,
      password,
      reconnectPeriod: 0,
      ...extra,
    });
    clients.push(client);
    return client;
  };

  const forwardedSamples = (deviceId: string) =>
    cloud.ingests.flatMap((r) => r.telemetry.filter((t) => t.deviceId === deviceId).flatMap((t) => t.batch.samples));

  before(async () => {
    cloud = await startCloudPeer(DEVICES);
    dataDir = await mkdtemp(join(tmpdir(), "kestrel-gateway-"));
    const config = loadGatewayConfig({
      MQTT_PORT: "0",
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      FORWARD_INTERVAL_MS: "20",
      GATEWAY_DATA_DIR: dataDir,
    });
    gateway = await startGateway(config, pino({ level: "silent" }));
  });

  after(async () => {
    for (const client of clients) await client.endAsync(true).catch(() => undefined);
    await gateway.stop();
    await cloud.close();
  });

  test("a device with the right token publishes telemetry that reaches the cloud unchanged", async () => {
    const client = await device("dev-a", DEVICES["dev-a"]);
    const sent = batch(3, 0, 5);
    await client.publishAsync("d/dev-a/telemetry", JSON.stringify(sent), { qos: 1 });
    const samples = await until(() => {
      const s = forwardedSamples("dev-a");
      return s.length >= 5 ? s : undefined;
    }, "forwarded samples");
    assert.deepEqual(samples, sent.samples);
    const forwarded = cloud.ingests.flatMap((r) => r.telemetry).find((t) => t.deviceId === "dev-a");
    assert.equal(forwarded?.batch.boot, 3);
  });

  test("a batch with properties validation does not know reaches the cloud without them", async () => {
    const client = await device("dev-c", DEVICES["dev-c"]);
    const sample = { seq: 8, ts: 1_764_000_000_001, m: { t: 2 } };
    await client.publishAsync(
      "d/dev-c/telemetry",
      JSON.stringify({ v: 1, boot: 12, note: "x", samples: [{ ...sample, extra: true }] }),
      { qos: 1 },
    );
    await client.publishAsync("d/dev-c/telemetry", JSON.stringify({ v: 1, boot: 13, samples: [sample] }), { qos: 1 });
    const batches = await until(() => {
      const found = cloud.ingests
        .flatMap((r) => r.telemetry)
        .filter((t) => t.deviceId === "dev-c" && t.batch.boot > 11);
      return found.length >= 2 ? found.map((t) => t.batch) : undefined;
    }, "both batches forwarded");
    assert.deepEqual(batches, [
      { v: 1, boot: 12, samples: [sample] },
      { v: 1, boot: 13, samples: [sample] },
    ]);
  });

  test("a wrong token or an unknown device is refused and counted", async () => {
    const before = await gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "wrong_credentials" });
    await assert.rejects(device("dev-a", "not-the-token"), /Bad username or password/);
    await assert.rejects(device("dev-zz", "whatever"), /Bad username or password/);
    const afterCount = await gateway.metrics.value("kestrel_gateway_auth_failures_total", {
      reason: "wrong_credentials",
    });
    assert.equal(afterCount - before, 2);
  });

  test("a username that differs from the client id is refused", async () => {
    await assert.rejects(
      connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
        clientId: "dev-a",
        username: "dev-b",
        password: DEVICES["dev-b"],
        reconnectPeriod: 0,
      }),
      /Bad username or password/,
    );
  });

  test("publishing to another device's topic disconnects the client and is counted", async () => {
    const client = await device("dev-c", DEVICES["dev-c"]);
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    // Its own topic first: the session remembers that topic as allowed, and the next one differs by a byte.
    await client.publishAsync("d/dev-c/telemetry", JSON.stringify(batch(2, 0, 1)), { qos: 1 });
    client.publish("d/dev-a/telemetry", JSON.stringify(batch(1, 0, 1)), { qos: 1 });
    await closed;
    assert.equal(await gateway.metrics.value("kestrel_gateway_acl_denials_total", { action: "publish" }), 1);
    const smuggled = cloud.ingests.flatMap((r) => r.telemetry).filter((t) => t.batch.boot === 1);
    assert.deepEqual(smuggled, []);
  });

  test("subscribing outside the device's command topic is refused", async () => {
    const client = await device("dev-b", DEVICES["dev-b"]);
    // SUBACK 0x80: mqtt.js turns the refusal into an error.
    await assert.rejects(client.subscribeAsync("d/dev-a/cmd", { qos: 1 }), /Unspecified error/);
    await assert.rejects(client.subscribeAsync("d/+/cmd", { qos: 1 }), /Unspecified error/);
    assert.equal(await gateway.metrics.value("kestrel_gateway_acl_denials_total", { action: "subscribe" }), 2);
    const own = await client.subscribeAsync("d/dev-b/cmd", { qos: 1 });
    assert.equal(own[0]?.qos, 1);
  });

  test("a device gets the ack of each telemetry batch once it is on disk, and only on its own ack topic", async () => {
    const client = await device("dev-a", DEVICES["dev-a"]);
    await assert.rejects(client.subscribeAsync("d/dev-b/telemetry/ack", { qos: 0 }), /Unspecified error/);
    await client.subscribeAsync("d/dev-a/telemetry/ack", { qos: 0 });
    // Each ack, with whether the uplink queue's segments held its batch when it arrived.
    const acks: Array<{ ack: unknown; onDisk: boolean }> = [];
    const uplink = join(dataDir, "uplink");
    const queuedText = async () => {
      const files = (await readdir(uplink)).filter((name) => name.endsWith(".seg"));
      return (await Promise.all(files.map((name) => readFile(join(uplink, name), "utf8")))).join("");
    };
    let checked = Promise.resolve();
    client.on("message", (topic, payload) => {
      if (topic !== "d/dev-a/telemetry/ack") return;
      const ack = JSON.parse(payload.toString()) as { seq: number };
      checked = checked
        .then(queuedText)
        .then((text) => void acks.push({ ack, onDisk: text.includes(`"seq":${ack.seq},"ts":`) }));
    });
    const published = await gateway.metrics.value("kestrel_gateway_telemetry_acks_published_total");
    await client.publishAsync("d/dev-a/telemetry", JSON.stringify(batch(8, 500, 3)), { qos: 1 });
    await client.publishAsync("d/dev-a/telemetry", JSON.stringify({ v: 1, boot: 8, samples: [] }), { qos: 1 });
    await client.publishAsync("d/dev-a/telemetry", JSON.stringify(batch(8, 503, 2)), { qos: 1 });
    await until(() => acks.length >= 2 || undefined, "two telemetry acks");
    // The malformed batch between them gets none; each ack names its batch's boot and last seq.
    assert.deepEqual(acks, [
      { ack: { v: 1, boot: 8, seq: 502 }, onDisk: true },
      { ack: { v: 1, boot: 8, seq: 504 }, onDisk: true },
    ]);
    assert.equal((await gateway.metrics.value("kestrel_gateway_telemetry_acks_published_total")) - published, 2);
  });

  test("malformed telemetry is dropped and counted, and the device keeps its connection", async () => {
    const client = await device("dev-b", DEVICES["dev-b"]);
    await client.publishAsync("d/dev-b/telemetry", "{not json", { qos: 1 });
    await client.publishAsync("d/dev-b/telemetry", JSON.stringify({ v: 1, boot: 1, samples: [{ seq: -1 }] }), {
      qos: 1,
    });
    await client.publishAsync("d/dev-b/telemetry", JSON.stringify(batch(9, 100, 2)), { qos: 1 });
    await until(() => forwardedSamples("dev-b").length >= 2 || undefined, "valid batch after bad ones");
    assert.equal(await gateway.metrics.value("kestrel_gateway_messages_rejected_total", { reason: "invalid_json" }), 1);
    assert.equal(
      await gateway.metrics.value("kestrel_gateway_messages_rejected_total", { reason: "invalid_sample" }),
      1,
    );
    assert.equal(client.connected, true);
    assert.deepEqual(
      forwardedSamples("dev-b").map((s) => s.seq),
      [100, 101],
    );
  });

  test("while the cloud is down the gateway keeps the data and delivers it once it is back", async () => {
    const client = await device("dev-a", DEVICES["dev-a"]);
    cloud.failWith = 503;
    const sent = batch(4, 0, 3);
    await client.publishAsync("d/dev-a/telemetry", JSON.stringify(sent), { qos: 1 });
    await until(
      async () => (await gateway.metrics.value("kestrel_gateway_forward_failures_total")) > 0 || undefined,
      "a failure",
    );
    assert.ok(gateway.forwarder.depth >= 1);
    cloud.failWith = undefined;
    await until(() => gateway.forwarder.depth === 0 || undefined, "queue drained", 10_000);
    const boot4 = cloud.ingests.flatMap((r) => r.telemetry).filter((t) => t.deviceId === "dev-a" && t.batch.boot === 4);
    assert.equal(boot4.length, 1);
    assert.deepEqual(boot4[0]?.batch.samples, sent.samples);
  });

  test("a device's last will reaches the cloud as an offline state", async () => {
    const client = await device("dev-b", DEVICES["dev-b"], {
      will: { topic: "d/dev-b/state", payload: Buffer.from('{"v":1,"online":false}'), qos: 1, retain: true },
    });
    await client.publishAsync("d/dev-b/state", JSON.stringify({ v: 1, online: true, fw: "0.1.0" }), {
      qos: 1,
      retain: true,
    });
    // Destroying the socket without DISCONNECT makes the broker publish the will.
    client.stream.destroy();
    const states = await until(() => {
      const s = cloud.ingests.flatMap((r) => r.states).filter((x) => x.deviceId === "dev-b");
      return s.some((x) => !x.state.online) ? s : undefined;
    }, "offline state");
    assert.deepEqual(
      states.map((s) => s.state.online),
      [true, false],
    );
  });

  test("garbage on the MQTT port is refused and the broker keeps serving", async () => {
    await new Promise<void>((resolve) => {
      const socket = connectTcp(gateway.mqttPort ?? 0, "127.0.0.1", () => {
        socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01]));
      });
      socket.on("close", () => resolve());
      socket.on("error", () => resolve());
    });
    const client = await device("dev-a", DEVICES["dev-a"]);
    assert.equal(client.connected, true);
    const health = await fetch(`http://127.0.0.1:${gateway.httpPort}/healthz`).then((r) => r.json());
    assert.equal(health.status, "ok");
    const metrics = await fetch(`http://127.0.0.1:${gateway.httpPort}/metrics`).then((r) => r.text());
    assert.match(metrics, /kestrel_gateway_connections_total\{auth="token"\} [1-9]/);
  });
});

describe("gateway configuration", () => {
  test("refuses a missing gateway key and out-of-range numbers with a clear message", () => {
    assert.throws(() => loadGatewayConfig({}), /GATEWAY_KEY must be set/);
    assert.throws(
      () => loadGatewayConfig({ GATEWAY_KEY: "k".repeat(20), MQTT_PORT: "70000" }),
      /MQTT_PORT must be an integer between 0 and 65535/,
    );
    assert.throws(
      () => loadGatewayConfig({ GATEWAY_KEY: "k".repeat(20), CLOUD_URL: "ftp://x" }),
      /CLOUD_URL must use http or https/,
    );
    // Under 1 KiB, or over the longest remaining length MQTT can encode.
    for (const bytes of ["512", "268435456"]) {
      assert.throws(
        () => loadGatewayConfig({ GATEWAY_KEY: "k".repeat(20), MQTT_MAX_PACKET_BYTES: bytes }),
        /MQTT_MAX_PACKET_BYTES must be an integer between 1024 and 268435455/,
      );
    }
    assert.equal(loadGatewayConfig({ GATEWAY_KEY: "k".repeat(20) }).mqttMaxPacketBytes, 256 * 1024);
  });

  test("the artifact cache and download limit: defaults, values, refusals", () => {
    const key = { GATEWAY_KEY: "k".repeat(20) };
    assert.deepEqual(loadGatewayConfig(key).artifacts, {
      cacheMaxBytes: 2 * 1024 ** 3,
      maxDownloads: 8,
      idleMs: 30_000,
    });
    assert.deepEqual(
      loadGatewayConfig({
        ...key,
        ARTIFACT_CACHE_MAX_BYTES: "104857600",
        ARTIFACT_MAX_DOWNLOADS: "20",
        ARTIFACT_DOWNLOAD_IDLE_MS: "5000",
      }).artifacts,
      { cacheMaxBytes: 104_857_600, maxDownloads: 20, idleMs: 5000 },
    );
    assert.throws(() => loadGatewayConfig({ ...key, ARTIFACT_MAX_DOWNLOADS: "0" }), /ARTIFACT_MAX_DOWNLOADS must be/);
    assert.throws(() => loadGatewayConfig({ ...key, ARTIFACT_CACHE_MAX_BYTES: "10" }), /ARTIFACT_CACHE_MAX_BYTES/);
  });

  test("turns the plain TCP listener off only when a TLS listener serves instead", () => {
    assert.throws(
      () => loadGatewayConfig({ GATEWAY_KEY: "k".repeat(20), MQTT_PORT: "off" }),
      /MQTT_PORT may be "off" only when MQTT_TLS_PORT is set/,
    );
  });

  test("takes an external broker as an mqtt(s) URL and nothing else", () => {
    const key = { GATEWAY_KEY: "k".repeat(20) };
    assert.throws(
      () => loadGatewayConfig({ ...key, EXTERNAL_BROKER_URL: "http://127.0.0.1:1883" }),
      /EXTERNAL_BROKER_URL must use mqtt or mqtts/,
    );
    const config = loadGatewayConfig({ ...key, EXTERNAL_BROKER_URL: "mqtt://127.0.0.1:1883" });
    assert.deepEqual(config.externalBroker, {
      url: "mqtt://127.0.0.1:1883",
      clientId: "kestrel-gateway",
      username: undefined,
      password: undefined,
      ca: undefined,
    });
  });
});
