// The SDK's own TLS + MQTT client (interop/main.js, built for the SDK's Linux simulator) against the
// real gateway and cloud on loopback: one device with its token, one with a platform-issued client
// certificate (RSA, from the CA the gateway trusts). Both must get CONNACK and the gateway's
// telemetry ack, and their samples must be in the cloud. A third device with an EC client
// certificate from the same CA must fail, as Moddable's client cannot sign with an EC key (what the
// simulator's TLS reproduces). mcsim runs headless under Xvfb.

import { type ChildProcess, spawn } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Gateway, loadGatewayConfig, startGateway } from "@kestrel/gateway";
import { CertificateAuthority, tlsListenerEnv } from "@kestrel/gateway/pki";
import { pino } from "pino";
import { RealCloud } from "../../../gateway/test/real-cloud.ts";
import { FIRMWARE_DIR, run, type Sdk } from "./sdk.ts";

const TOKEN_DEVICE = "interop-token";
const CERT_DEVICE = "interop-cert";
const EC_CERT_DEVICE = "interop-ec-cert";
const RUN_TIMEOUT_MS = 120_000;

export interface InteropResult {
  ok: boolean;
  trace: string[];
  problems: string[];
}

function der(pem: string, kind: "certificate" | "key"): Buffer {
  return kind === "certificate"
    ? new X509Certificate(pem).raw
    : createPrivateKey(pem).export({ format: "der", type: "pkcs8" });
}

/** Runs mcsim headless until the app says it is done (or the timeout), then stops it and its X server. */
function runSimulator(sdk: Sdk, app: string, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    // stdbuf: trace() writes to a pipe here, which the C library would otherwise buffer until exit.
    const child: ChildProcess = spawn("xvfb-run", ["-a", "stdbuf", "-oL", "-eL", join(sdk.bin, "mcsim"), app], {
      env: sdk.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let pending = "";
    const stop = () => {
      clearTimeout(timer);
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, "SIGTERM");
    };
    const timer = setTimeout(stop, RUN_TIMEOUT_MS);
    const read = (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        onLine(line);
        if (line === "interop: done") stop();
      }
    };
    child.stdout?.on("data", read);
    child.stderr?.on("data", read);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function runInterop(sdk: Sdk, dir: string): Promise<InteropResult> {
  const result: InteropResult = { ok: false, trace: [], problems: [] };
  const appDir = join(dir, "app");
  mkdirSync(appDir, { recursive: true });
  const ca = CertificateAuthority.create(join(dir, "pki"), "kestrel interop CA", 2);
  const servers = ca.issueServerPair("gateway", ["127.0.0.1"]);
  const device = ca.issue(CERT_DEVICE, { kind: "client" });
  const ecDevice = ca.issue(EC_CERT_DEVICE, { kind: "client", key: "ec" });
  writeFileSync(join(appDir, "mqtt-ca.der"), der(ca.certificate, "certificate"));
  writeFileSync(join(appDir, "device-cert.der"), der(device.cert, "certificate"));
  writeFileSync(join(appDir, "device-key.der"), der(device.key, "key"));
  writeFileSync(join(appDir, "device-ec-cert.der"), der(ecDevice.cert, "certificate"));
  writeFileSync(join(appDir, "device-ec-key.der"), der(ecDevice.key, "key"));
  writeFileSync(
    join(appDir, "manifest.json"),
    JSON.stringify({
      include: [join(FIRMWARE_DIR, "interop/manifest.json")],
      resources: { "*": ["./mqtt-ca", "./device-cert", "./device-key", "./device-ec-cert", "./device-ec-key"] },
    }),
  );
  const cloud = await RealCloud.start([TOKEN_DEVICE, CERT_DEVICE, EC_CERT_DEVICE]);
  let gateway: Gateway | undefined;
  try {
    gateway = await startGateway(
      loadGatewayConfig({
        MQTT_PORT: "off",
        MQTT_TLS_PORT: "0",
        ...tlsListenerEnv(servers),
        MQTT_TLS_CLIENT_CA: ca.certificatePath,
        GATEWAY_HTTP_PORT: "0",
        GATEWAY_DATA_DIR: join(dir, "gateway"),
        CLOUD_URL: cloud.url,
        GATEWAY_KEY: cloud.credentials.gatewayKey,
      }),
      pino({ level: "silent" }),
    );
    const token = cloud.credentials.devices.find((entry) => entry.deviceId === TOKEN_DEVICE)?.token ?? "";
    const out = join(dir, "out");
    mkdirSync(out, { recursive: true });
    // Release build (no -d: a debug build would wait for xsbug); -t build: make only, nothing launched.
    const build = run(
      sdk,
      "mcconfig",
      [
        "-m",
        "-t",
        "build",
        "-p",
        "lin",
        "-o",
        out,
        "manifest.json",
        `mqttPort=${gateway.mqttTlsPort}`,
        `tokenDevice=${TOKEN_DEVICE}`,
        `token=${token}`,
        `certDevice=${CERT_DEVICE}`,
        `ecCertDevice=${EC_CERT_DEVICE}`,
      ],
      appDir,
    );
    if (build.status !== 0) {
      result.problems.push(`mcconfig -m -p lin failed:\n${build.output.slice(-3000)}`);
      return result;
    }
    await runSimulator(sdk, join(out, "bin/lin/mc/release/app/mc.so"), (line) => {
      if (line.startsWith("interop:") || /MQTT|SSL|TLS|error/i.test(line)) result.trace.push(line);
    });
    for (const name of ["token", "certificate"]) {
      const lines = result.trace.filter((line) => line.startsWith(`interop: ${name}:`));
      if (!lines.some((line) => line.endsWith("CONNACK"))) result.problems.push(`${name}: no CONNACK`);
      if (!lines.some((line) => line.includes("/telemetry/ack {")))
        result.problems.push(`${name}: no telemetry ack from the gateway`);
    }
    const ec = result.trace.filter((line) => line.startsWith("interop: ec-certificate:"));
    if (ec.some((line) => line.endsWith("CONNACK")) || !ec.some((line) => line.endsWith("closed")))
      result.problems.push("ec-certificate: expected the handshake to fail (no CONNACK, closed)");
    for (const deviceId of [TOKEN_DEVICE, CERT_DEVICE]) {
      const stored = await cloud.rawHistory(deviceId);
      if (stored.length !== 1) result.problems.push(`${deviceId}: the cloud stored ${stored.length} samples, not 1`);
      else result.trace.push(`cloud: ${deviceId} sample stored (boot ${stored[0]?.boot}, seq ${stored[0]?.seq})`);
    }
    result.ok = result.problems.length === 0;
    return result;
  } finally {
    await gateway?.stop();
    await cloud.stop();
  }
}
