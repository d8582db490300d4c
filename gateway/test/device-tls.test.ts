// The gateway speaks the TLS devices speak: offered exactly Moddable's ClientHello (openssl s_client,
// TLS 1.2, one suite at a time, curve P-256, ECDSA and RSA signatures with SHA-256), it completes the
// handshake for every forward-secret suite the device offers (ECDSA and RSA certificates served side
// by side, DH parameters for DHE-RSA) and refuses RSA key exchange; a device's RSA client certificate
// authenticates it. Then MQTT itself over each certificate, through the gateway's session layer: a
// device limited to the ECDSA or to an RSA suite publishes and gets its PUBACK and telemetry ack, and
// one with an RSA client certificate connects without a token. A certificate list whose keys do not
// pair up is a clear configuration error.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ConnectionOptions, TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { DEVICE_TLS } from "@kestrel/wire/device-tls";
import { connectAsync, type IClientOptions } from "mqtt";
import { pino } from "pino";
import { ConfigError, loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { CertificateAuthority, type IssuedCertificate, tlsListenerEnv } from "../src/pki.ts";
import { type CloudPeer, startCloudPeer } from "./cloud-peer.ts";

const run = promisify(execFile);

const BATCH = JSON.stringify({ v: 1, boot: 1, samples: [{ seq: 4, ts: 1_764_000_000_000, m: { temperature: 20 } }] });

interface Handshake {
  ok: boolean;
  cipher: string | undefined;
  output: string;
}

describe("gateway TLS against Moddable's ClientHello", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let servers: IssuedCertificate[];
  let cloud: CloudPeer;
  let gateway: Gateway;

  /** openssl s_client offering what a device offers, limited to these suites; the handshake only (no MQTT). */
  async function handshake(suites: readonly string[], client?: IssuedCertificate): Promise<Handshake> {
    const args = [
      "s_client",
      "-connect",
      `127.0.0.1:${gateway.mqttTlsPort}`,
      "-tls1_2",
      "-cipher",
      suites.join(":"),
      "-curves",
      DEVICE_TLS.groups.join(":"),
      "-sigalgs",
      DEVICE_TLS.signatureAlgorithms.join(":"),
      "-CAfile",
      ca.certificatePath,
      "-verify_return_error",
      "-verify_ip",
      "127.0.0.1",
      ...(client ? ["-cert", client.certPath, "-key", client.keyPath] : []),
    ];
    const child = run("openssl", args, { timeout: 20_000 });
    child.child.stdin?.end();
    try {
      const { stdout, stderr } = await child;
      const output = stdout + stderr;
      return { ok: true, cipher: /Cipher is (\S+)/.exec(stdout)?.[1], output };
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string };
      return { ok: false, cipher: undefined, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
    }
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "kestrel-device-tls-"));
    ca = CertificateAuthority.create(join(dir, "ca"), "kestrel-ca", 2);
    servers = ca.issueServerPair("gateway", ["127.0.0.1"]);
    cloud = await startCloudPeer({ "dev-a": "token-a" });
    gateway = await startGateway(
      loadGatewayConfig({
        MQTT_PORT: "off",
        MQTT_TLS_PORT: "0",
        ...tlsListenerEnv(servers),
        MQTT_TLS_CLIENT_CA: ca.certificatePath,
        GATEWAY_HTTP_PORT: "0",
        GATEWAY_DATA_DIR: join(dir, "gateway"),
        CLOUD_URL: cloud.url,
        GATEWAY_KEY: cloud.gatewayKey,
      }),
      pino({ level: "silent" }),
    );
  });

  /** An MQTT client over TLS 1.2 offering the device's curve and signature algorithms, and these suites. */
  const mqttOverTls = (suites: readonly string[], options: IClientOptions) => {
    // mqtt.js hands its options to tls.connect, but types only a few of them.
    const deviceTls: Pick<ConnectionOptions, "maxVersion" | "ciphers" | "ecdhCurve" | "sigalgs"> = {
      maxVersion: "TLSv1.2",
      ciphers: suites.join(":"),
      ecdhCurve: DEVICE_TLS.groups.join(":"),
      sigalgs: DEVICE_TLS.signatureAlgorithms.join(":"),
    };
    return connectAsync(`mqtts://127.0.0.1:${gateway.mqttTlsPort}`, {
      clientId: "dev-a",
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ca: ca.certificate,
      ...deviceTls,
      ...options,
    });
  };

  after(async () => {
    await gateway.stop();
    await cloud.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const suite of DEVICE_TLS.cipherSuites) {
    const hex = `0x${suite.id.toString(16).padStart(4, "0")}`;
    const expected = suite.forwardSecret ? "accepted" : "refused (no forward secrecy)";
    test(`suite ${hex} ${suite.openssl}: ${expected}`, async () => {
      const result = await handshake([suite.openssl]);
      assert.equal(result.ok, suite.forwardSecret, result.output.slice(-1500));
      if (suite.forwardSecret) assert.equal(result.cipher, suite.openssl);
    });
  }

  test("the whole ClientHello negotiates ECDHE; with ECDHE_RSA off in the device build, DHE-RSA", async () => {
    const all = await handshake(DEVICE_TLS.cipherSuites.map((suite) => suite.openssl));
    assert.ok(all.ok, all.output.slice(-1500));
    assert.match(String(all.cipher), /^ECDHE-/);
    const withoutEcdhe = DEVICE_TLS.cipherSuites.filter((suite) => suite.needs !== "ECDHE_RSA");
    const dhe = await handshake(withoutEcdhe.map((suite) => suite.openssl));
    assert.ok(dhe.ok, dhe.output.slice(-1500));
    assert.match(String(dhe.cipher), /^DHE-RSA-/);
  });

  test("a device's RSA client certificate is accepted with the device's suites", async () => {
    const device = ca.issue("dev-a", { kind: "client" });
    const result = await handshake(
      DEVICE_TLS.cipherSuites.map((suite) => suite.openssl),
      device,
    );
    assert.ok(result.ok, result.output.slice(-1500));
    assert.match(result.output, /Client Certificate Types|Acceptable client certificate CA names/);
  });

  for (const [suite, certificate] of [
    ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA"],
    ["ECDHE-RSA-AES128-GCM-SHA256", "RSA"],
    ["DHE-RSA-AES128-GCM-SHA256", "RSA"],
  ] as const) {
    test(`MQTT over ${suite} (the ${certificate} certificate): a QoS 1 publish gets its PUBACK and telemetry ack`, async () => {
      const client = await mqttOverTls([suite], { username: "dev-a", password: "token-a" });
      try {
        const socket = client.stream as TLSSocket;
        assert.equal(socket.getCipher().standardName.includes(certificate === "ECDSA" ? "ECDSA" : "RSA"), true);
        // An EC certificate names its curve; an RSA one has a modulus.
        const served = socket.getPeerCertificate();
        assert.ok(certificate === "ECDSA" ? served.asn1Curve : served.modulus, "the expected certificate served");
        await client.subscribeAsync("d/dev-a/telemetry/ack", { qos: 0 });
        const ack = new Promise<string>((resolve) =>
          client.once("message", (_topic, payload) => resolve(`${payload}`)),
        );
        await client.publishAsync("d/dev-a/telemetry", BATCH, { qos: 1 });
        assert.deepEqual(JSON.parse(await ack), { v: 1, boot: 1, seq: 4 });
      } finally {
        await client.endAsync();
      }
    });
  }

  test("MQTT with an RSA client certificate and the device's suites: connected without a token", async () => {
    const device = ca.issue("dev-a", { kind: "client" });
    const before = await gateway.metrics.value("kestrel_gateway_connections_total", { auth: "certificate" });
    const client = await mqttOverTls(
      DEVICE_TLS.cipherSuites.map((suite) => suite.openssl),
      { cert: device.cert, key: device.key },
    );
    try {
      await client.publishAsync("d/dev-a/telemetry", BATCH, { qos: 1 });
      assert.equal(
        (await gateway.metrics.value("kestrel_gateway_connections_total", { auth: "certificate" })) - before,
        1,
      );
    } finally {
      await client.endAsync();
    }
  });

  test("certificate and key lists that do not pair up are refused with a clear error", () => {
    const [ec, rsa] = servers as [IssuedCertificate, IssuedCertificate];
    const base = { GATEWAY_KEY: cloud.gatewayKey, MQTT_TLS_PORT: "0" };
    assert.throws(
      () =>
        loadGatewayConfig({
          ...base,
          MQTT_TLS_CERT: [ec.chainPath, rsa.chainPath].join(delimiter),
          MQTT_TLS_KEY: ec.keyPath,
        }),
      (error: unknown) =>
        error instanceof ConfigError && /2 certificate file\(s\) and MQTT_TLS_KEY 1 key file/.test(error.message),
    );
    assert.throws(
      () => loadGatewayConfig({ ...base, MQTT_TLS_CERT: ec.chainPath, MQTT_TLS_KEY: rsa.keyPath }),
      (error: unknown) => error instanceof ConfigError && /is not the key of/.test(error.message),
    );
  });
});
