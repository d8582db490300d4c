// MQTT over TLS from the firmware in XS: the simulated securesocket becomes a real TLS connection
// that verifies the broker's chain against the CA the device carries, and presents the device's
// certificate when the broker asks for one (mutual TLS). Certificates are made here with openssl. The
// simulated TLS holds the device's limits: its ClientHello is Moddable's, and an EC client key fails
// the handshake as it does on a device.

import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CertificateAuthority, type IssuedCertificate } from "@kestrel/gateway/pki";
import { DEVICE_TLS } from "@kestrel/wire/device-tls";
import { startSimDevice } from "../sim/index.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";
import { waitUntil } from "./wait.ts";

const TOKENS = new Map([
  ["tls-a", "token-a"],
  ["tls-b", "token-b"],
  ["tls-c", "token-c"],
  ["tls-d", "token-d"],
  ["tls-e", "token-e"],
  ["tls-f", "token-f"],
  ["tls-g", "token-g"],
]);

let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let server: IssuedCertificate;
let tlsBroker: TestBroker;
let mtlsBroker: TestBroker;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "kestrel-tls-"));
  ca = CertificateAuthority.create(join(dir, "ca"), "kestrel-ca", 2);
  otherCa = CertificateAuthority.create(join(dir, "other-ca"), "other-ca", 2);
  server = ca.issue("server", { kind: "server", hosts: ["127.0.0.1", "localhost"] });
  tlsBroker = await startBroker(TOKENS, { key: server.key, cert: server.chain });
  mtlsBroker = await startBroker(TOKENS, {
    key: server.key,
    cert: server.chain,
    ca: ca.certificate,
    requestCert: true,
    rejectUnauthorized: true,
  });
});

after(async () => {
  await tlsBroker.close();
  await mtlsBroker.close();
  rmSync(dir, { recursive: true, force: true });
});

async function expectRefused(
  broker: TestBroker,
  deviceId: string,
  tls: { ca: string; cert?: string; key?: string },
  error?: RegExp,
): Promise<void> {
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    tls,
    stateDir: dir,
    logger,
  });
  try {
    await waitUntil(
      () => entries.filter((entry) => entry.msg === "mqtt reconnect scheduled").length >= 1,
      "a failed attempt",
    );
    if (error) {
      const failures = entries.filter((entry) => entry.msg === "simulated mqtt connection error");
      assert.ok(
        failures.some((entry) => error.test(String(entry.fields.err))),
        failures.map((entry) => entry.fields.err).join("; "),
      );
    }
    assert.ok(!entries.some((entry) => entry.msg === "mqtt connected"), "the firmware never got onReady");
    assert.equal(broker.published.filter((m) => m.clientId === deviceId).length, 0, "nothing got through");
  } finally {
    await device.stop();
  }
}

test("connects over TLS when the broker's chain leads to the configured CA", async (t) => {
  const device = await startSimDevice({
    deviceId: "tls-a",
    token: "token-a",
    mqttUrl: tlsBroker.url,
    tls: { ca: ca.certificate },
    stateDir: dir,
    sampleIntervalMs: 50,
    samplesPerBatch: 2,
  });
  t.after(() => device.stop());
  assert.match(tlsBroker.url, /^mqtts:/);
  await device.connected;
  const state = await tlsBroker.waitFor((m) => m.topic === "d/tls-a/state" && m.clientId === "tls-a");
  assert.equal(JSON.parse(state.payload).online, true);
  await tlsBroker.waitFor((m) => m.topic === "d/tls-a/telemetry");
});

test("refuses a broker whose certificate another CA signed", async () => {
  await expectRefused(tlsBroker, "tls-b", { ca: otherCa.certificate }, /self[- ]signed|unable to (get|verify)/i);
});

test("refuses a broker whose certificate names another host", async () => {
  const misnamed = ca.issue("elsewhere", { kind: "server", hosts: ["elsewhere.example"] });
  const broker = await startBroker(TOKENS, { key: misnamed.key, cert: misnamed.chain });
  try {
    await expectRefused(broker, "tls-b", { ca: ca.certificate }, /does not match|altnames/i);
  } finally {
    await broker.close();
  }
});

test("refuses a broker whose certificate has expired", async () => {
  const day = 86_400_000;
  const stale = ca.issue(
    "stale",
    { kind: "server", hosts: ["127.0.0.1"] },
    { notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) },
  );
  const broker = await startBroker(TOKENS, { key: stale.key, cert: stale.chain });
  try {
    await expectRefused(broker, "tls-b", { ca: ca.certificate }, /expired/i);
  } finally {
    await broker.close();
  }
});

test("mutual TLS: the device's certificate from the CA is accepted", async (t) => {
  const { cert, key } = ca.issue("tls-c", { kind: "client" });
  const device = await startSimDevice({
    deviceId: "tls-c",
    token: "token-c",
    mqttUrl: mtlsBroker.url,
    tls: { ca: ca.certificate, cert, key },
    stateDir: dir,
  });
  t.after(() => device.stop());
  await device.connected;
  await mtlsBroker.waitFor((m) => m.topic === "d/tls-c/state" && m.clientId === "tls-c");
});

test("mutual TLS: a device without a certificate, or with one from another CA, is refused", async () => {
  const stranger = otherCa.issue("tls-e", { kind: "client" });
  // With TLS 1.3 the broker refuses the client's certificate after the client finished its side
  // of the handshake: the device sees the connection close rather than a verification error.
  await expectRefused(mtlsBroker, "tls-d", { ca: ca.certificate });
  await expectRefused(mtlsBroker, "tls-e", { ca: ca.certificate, cert: stranger.cert, key: stranger.key });
});

test("mutual TLS: an EC client key fails the handshake as on a device; the RSA one from the same CA connects", async () => {
  const ec = ca.issue("tls-f", { kind: "client", key: "ec" });
  const { logger, entries } = captureLogs();
  const device = await startSimDevice({
    deviceId: "tls-f",
    token: "token-f",
    mqttUrl: mtlsBroker.url,
    tls: { ca: ca.certificate, cert: ec.cert, key: ec.key },
    stateDir: dir,
    logger,
  });
  try {
    await waitUntil(() => entries.some((entry) => entry.msg === "mqtt reconnect scheduled"), "a failed attempt");
    const failure = entries.find((entry) => entry.msg === "simulated securesocket: TLS handshake failed");
    assert.match(String(failure?.fields.err), /RSA client keys only.*BER: not an integer.*ec key/);
    assert.ok(
      entries.some((entry) => entry.msg === "mqtt connection closed" && entry.fields.wasOnline === false),
      "the firmware saw the connection close before onReady, as the device does",
    );
    assert.equal(mtlsBroker.published.filter((m) => m.clientId === "tls-f").length, 0, "nothing got through");
  } finally {
    await device.stop();
  }
  const rsa = ca.issue("tls-f", { kind: "client" });
  const again = await startSimDevice({
    deviceId: "tls-f",
    token: "token-f",
    mqttUrl: mtlsBroker.url,
    tls: { ca: ca.certificate, cert: rsa.cert, key: rsa.key },
    stateDir: dir,
  });
  try {
    await again.connected;
  } finally {
    await again.stop();
  }
});

interface ClientHello {
  version: number;
  cipherSuites: number[];
  groups: number[];
  signatureAlgorithms: number[];
  extensions: number[];
}

/** The fields of a TLS ClientHello record that say what the client can do. */
function parseClientHello(record: Buffer): ClientHello {
  assert.equal(record[0], 0x16, "a handshake record");
  assert.equal(record[5], 0x01, "a ClientHello");
  let at = 9;
  const version = record.readUInt16BE(at);
  at += 2 + 32;
  at += 1 + (record[at] as number);
  const suitesEnd = at + 2 + record.readUInt16BE(at);
  const cipherSuites: number[] = [];
  for (at += 2; at < suitesEnd; at += 2) cipherSuites.push(record.readUInt16BE(at));
  at += 1 + (record[at] as number);
  const extensionsEnd = at + 2 + record.readUInt16BE(at);
  const hello: ClientHello = { version, cipherSuites, groups: [], signatureAlgorithms: [], extensions: [] };
  for (at += 2; at < extensionsEnd; ) {
    const type = record.readUInt16BE(at);
    const length = record.readUInt16BE(at + 2);
    const data = record.subarray(at + 4, at + 4 + length);
    hello.extensions.push(type);
    const list = (): number[] => {
      const values: number[] = [];
      for (let i = 2; i < 2 + data.readUInt16BE(0); i += 2) values.push(data.readUInt16BE(i));
      return values;
    };
    if (type === 0x000a) hello.groups = list();
    if (type === 0x000d) hello.signatureAlgorithms = list();
    at += 4 + length;
  }
  return hello;
}

test("the simulated TLS sends Moddable's ClientHello: TLS 1.2, its ten suites, P-256, ECDSA and RSA with SHA-256", async () => {
  const hellos: Buffer[] = [];
  const listener = createServer((socket: Socket) => {
    socket.once("data", (chunk: Buffer) => {
      hellos.push(chunk);
      socket.destroy();
    });
  });
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const { port } = listener.address() as AddressInfo;
  const { logger } = captureLogs();
  const device = await startSimDevice({
    deviceId: "tls-g",
    token: "token-g",
    mqttUrl: `mqtts://127.0.0.1:${port}`,
    tls: { ca: ca.certificate },
    stateDir: dir,
    logger,
  });
  try {
    await waitUntil(() => hellos.length > 0, "a ClientHello");
  } finally {
    await device.stop();
    listener.close();
  }
  const hello = parseClientHello(hellos[0] as Buffer);
  assert.equal(hello.version, 0x0303);
  assert.ok(!hello.extensions.includes(0x002b), "no supported_versions extension: TLS 1.2 only");
  // 0x00ff is the renegotiation SCSV, a signal rather than a suite.
  assert.deepEqual(
    hello.cipherSuites.filter((suite) => suite !== 0x00ff).sort(),
    DEVICE_TLS.cipherSuites.map((suite) => suite.id).sort(),
  );
  assert.deepEqual(hello.groups, [0x0017], "secp256r1 only");
  assert.deepEqual(hello.signatureAlgorithms, [0x0403, 0x0401], "ecdsa_secp256r1_sha256, rsa_pkcs1_sha256");
});
