// MQTT over TLS: devices verify the gateway against the CA; with mutual TLS a device proves its
// identity with a certificate whose CN is its id; anything else (another CA, another device's
// certificate, an expired one) is refused and counted.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { pino } from "pino";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { CertificateAuthority, type IssuedCertificate } from "../src/pki.ts";
import { type CloudPeer, startCloudPeer } from "./cloud-peer.ts";

const DEVICES = { "dev-a": "token-a-secret", "dev-b": "token-b-secret" };
const DAY_MS = 86_400_000;
/** A validity window that ended yesterday. */
const expired = () => ({ notBefore: new Date(Date.now() - 3 * DAY_MS), notAfter: new Date(Date.now() - DAY_MS) });

describe("gateway over TLS", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let server: IssuedCertificate;
  let cloud: CloudPeer;
  let gateway: Gateway;
  const clients: MqttClient[] = [];

  const connect = async (options: IClientOptions) => {
    const client = await connectAsync(`mqtts://127.0.0.1:${gateway.mqttTlsPort}`, {
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ca: ca.certificate,
      ...options,
    });
    clients.push(client);
    return client;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "kestrel-gw-tls-"));
    ca = CertificateAuthority.create(join(dir, "ca"), "kestrel-ca", 2);
    otherCa = CertificateAuthority.create(join(dir, "other-ca"), "other-ca", 2);
    server = ca.issue("gateway", { kind: "server", hosts: ["127.0.0.1", "localhost"] });
    cloud = await startCloudPeer(DEVICES);
    const config = loadGatewayConfig({
      MQTT_PORT: "0",
      MQTT_TLS_PORT: "0",
      MQTT_TLS_CERT: server.chainPath,
      MQTT_TLS_KEY: server.keyPath,
      MQTT_TLS_CLIENT_CA: ca.certificatePath,
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
      connect({ clientId: "dev-a", username: "dev-a", password: DEVICES["dev-a"], ca: otherCa.certificate }),
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
    const { cert, key } = ca.issue("dev-b", { kind: "client" });
    const client = await connect({ clientId: "dev-b", cert, key });
    assert.equal(client.connected, true);
    assert.ok((await gateway.metrics.value("kestrel_gateway_connections_total", { auth: "certificate" })) >= 1);
  });

  test("mutual TLS: a certificate for another device, or from another CA, is refused and counted", async () => {
    const other = ca.issue("dev-b", { kind: "client" });
    await assert.rejects(connect({ clientId: "dev-a", cert: other.cert, key: other.key }), /Not authorized/);
    const untrusted = otherCa.issue("dev-a", { kind: "client" });
    await assert.rejects(connect({ clientId: "dev-a", cert: untrusted.cert, key: untrusted.key }), /Not authorized/);
    assert.equal(
      await gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "certificate_cn_mismatch" }),
      1,
    );
    assert.equal(
      await gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "bad_client_certificate" }),
      1,
    );
  });

  test("mutual TLS: an expired client certificate is refused and counted", async () => {
    const stale = ca.issue("dev-a", { kind: "client" }, expired());
    await assert.rejects(connect({ clientId: "dev-a", cert: stale.cert, key: stale.key }), /Not authorized/);
    assert.equal(
      await gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "client_certificate_expired" }),
      1,
    );
  });

  test("a device refuses a gateway whose certificate has expired", async () => {
    const stale = ca.issue("gateway-expired", { kind: "server", hosts: ["127.0.0.1"] }, expired());
    const staleDir = join(dir, "stale");
    const staleGateway = await startGateway(
      loadGatewayConfig({
        MQTT_PORT: "off",
        MQTT_TLS_PORT: "0",
        MQTT_TLS_CERT: stale.chainPath,
        MQTT_TLS_KEY: stale.keyPath,
        GATEWAY_HTTP_PORT: "0",
        GATEWAY_DATA_DIR: staleDir,
        CLOUD_URL: cloud.url,
        GATEWAY_KEY: cloud.gatewayKey,
      }),
      pino({ level: "silent" }),
    );
    try {
      await assert.rejects(
        connectAsync(`mqtts://127.0.0.1:${staleGateway.mqttTlsPort}`, {
          reconnectPeriod: 0,
          connectTimeout: 5000,
          ca: ca.certificate,
          clientId: "dev-a",
          username: "dev-a",
          password: DEVICES["dev-a"],
        }),
        (error: NodeJS.ErrnoException) => error.code === "CERT_HAS_EXPIRED",
      );
      assert.doesNotMatch(
        await staleGateway.metrics.render(),
        /^kestrel_gateway_connections_total\{/m,
        "nobody connected",
      );
      assert.equal(staleGateway.mqttPort, undefined, "MQTT_PORT=off leaves only the TLS listener");
    } finally {
      await staleGateway.stop();
    }
  });
});
