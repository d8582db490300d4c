// MQTT over TLS: devices verify the gateway against the CA; with mutual TLS a device proves its
// identity with a certificate whose CN is its id; anything else is refused and counted.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { pino } from "pino";
// The PKI helper is shared with the firmware's TLS tests rather than written twice.
import { makePki, type TestPki } from "../../firmware/test/certificates.ts";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { type CloudPeer, startCloudPeer } from "./cloud-peer.ts";

const DEVICES = { "dev-a": "token-a-secret", "dev-b": "token-b-secret" };

describe("gateway over TLS", () => {
  let dir: string;
  let pki: TestPki;
  let cloud: CloudPeer;
  let gateway: Gateway;
  const clients: MqttClient[] = [];

  const connect = async (options: IClientOptions) => {
    const client = await connectAsync(`mqtts://127.0.0.1:${gateway.mqttTlsPort}`, {
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ca: pki.ca,
      ...options,
    });
    clients.push(client);
    return client;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "kestrel-gw-tls-"));
    pki = makePki(dir);
    writeFileSync(join(dir, "chain.pem"), pki.serverChain);
    writeFileSync(join(dir, "server-key.pem"), pki.serverKey);
    writeFileSync(join(dir, "device-ca.pem"), pki.ca);
    cloud = await startCloudPeer(DEVICES);
    const config = loadGatewayConfig({
      MQTT_PORT: "0",
      MQTT_TLS_PORT: "0",
      MQTT_TLS_CERT: join(dir, "chain.pem"),
      MQTT_TLS_KEY: join(dir, "server-key.pem"),
      MQTT_TLS_CLIENT_CA: join(dir, "device-ca.pem"),
      GATEWAY_HTTP_PORT: "0",
      GATEWAY_DATA_DIR: join(dir, "gateway"),
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      FORWARD_INTERVAL_MS: "20",
    });
    gateway = await startGateway(config, pino({ level: "silent" }));
  });

  after(async () => {
    for (const client of clients) await client.endAsync(true).catch(() => undefined);
    await gateway.stop();
    await cloud.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a device that trusts the CA connects with its token and its telemetry reaches the cloud", async () => {
    const client = await connect({ clientId: "dev-a", username: "dev-a", password: DEVICES["dev-a"] });
    const batch = { v: 1, boot: 1, samples: [{ seq: 0, ts: 1_764_000_000_000, m: { temperature: 20.5 } }] };
    await client.publishAsync("d/dev-a/telemetry", JSON.stringify(batch), { qos: 1 });
    const deadline = Date.now() + 5000;
    while (!cloud.ingests.some((r) => r.telemetry.some((t) => t.deviceId === "dev-a"))) {
      assert.ok(Date.now() < deadline, "telemetry did not reach the cloud");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  test("a device that trusts another CA refuses the gateway", async () => {
    await assert.rejects(
      connect({ clientId: "dev-a", username: "dev-a", password: DEVICES["dev-a"], ca: pki.otherCa }),
      /certificate/i,
    );
  });

  test("a wrong token over TLS is refused", async () => {
    await assert.rejects(
      connect({ clientId: "dev-a", username: "dev-a", password: "nope" }),
      /Bad username or password/,
    );
  });

  test("mutual TLS: a certificate whose CN is the client id authenticates without a token", async () => {
    const { cert, key } = pki.client("dev-b");
    const client = await connect({ clientId: "dev-b", cert, key });
    assert.equal(client.connected, true);
    assert.ok(gateway.metrics.value("kestrel_gateway_connections_total") >= 1);
  });

  test("mutual TLS: a certificate for another device, or from another CA, is refused and counted", async () => {
    const other = pki.client("dev-b");
    await assert.rejects(connect({ clientId: "dev-a", cert: other.cert, key: other.key }), /Not authorized/);
    const untrusted = pki.client("dev-a-rogue", { untrusted: true });
    await assert.rejects(connect({ clientId: "dev-a", cert: untrusted.cert, key: untrusted.key }), /Not authorized/);
    assert.equal(
      gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "certificate_cn_mismatch" }),
      1,
    );
    assert.equal(gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "bad_client_certificate" }), 1);
  });
});
