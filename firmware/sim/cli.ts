// Runs simulated devices against an MQTT broker until SIGINT/SIGTERM, logging JSON lines:
//   tsx firmware/sim/cli.ts --credentials devices.json --mqtt mqtt://127.0.0.1:1883
//       [--count N] [--state-dir DIR] [--interval-ms MS] [--ca ca.pem [--cert cert.pem --key key.pem]]
// The credentials file is { "devices": [ { "deviceId": "...", "token": "..." } ] }. With an mqtts://
// broker, --ca is the CA its certificate must lead to; --cert/--key give every device that client
// certificate for mutual TLS.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { isDeviceId } from "@kestrel/wire";
import { type SimDevice, type SimLogger, startSimDevice } from "./index.ts";

interface Credentials {
  deviceId: string;
  token: string;
}

function line(level: string, obj: object, msg?: string): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, ...obj, msg })}\n`);
}

const logger: SimLogger = {
  info: (obj, msg) => line("info", obj, msg),
  warn: (obj, msg) => line("warn", obj, msg),
  error: (obj, msg) => line("error", obj, msg),
  debug: (obj, msg) => line("debug", obj, msg),
};

function readCredentials(file: string): Credentials[] {
  const parsed = JSON.parse(readFileSync(file, "utf8")) as { devices?: unknown };
  if (!Array.isArray(parsed.devices) || parsed.devices.length === 0)
    throw new Error(`${file}: expected { "devices": [ { "deviceId", "token" } ] }`);
  return parsed.devices.map((entry: unknown, index: number) => {
    const { deviceId, token } = (entry ?? {}) as Record<string, unknown>;
    if (!isDeviceId(deviceId) || typeof token !== "string" || token.length === 0)
      throw new Error(`${file}: devices[${index}] needs a valid deviceId and a non-empty token`);
    return { deviceId, token };
  });
}

function positiveInteger(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
  return number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      credentials: { type: "string" },
      mqtt: { type: "string", default: "mqtt://127.0.0.1:1883" },
      count: { type: "string" },
      "state-dir": { type: "string", default: ".data/sim" },
      "interval-ms": { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
    },
  });
  if (!values.credentials) throw new Error("--credentials <file.json> is required");
  const all = readCredentials(values.credentials);
  const count = positiveInteger(values.count, "--count") ?? all.length;
  if (count > all.length)
    throw new Error(`--count ${count} exceeds the ${all.length} devices in ${values.credentials}`);
  const sampleIntervalMs = positiveInteger(values["interval-ms"], "--interval-ms");
  const stateDir = resolve(values["state-dir"]);
  const pem = (file: string | undefined): string | undefined => (file ? readFileSync(file, "utf8") : undefined);
  const ca = pem(values.ca);
  const tls = ca === undefined ? undefined : { ca, cert: pem(values.cert), key: pem(values.key) };

  const devices: SimDevice[] = [];
  let stopping = false;
  const stopAll = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, devices: devices.length }, "stopping simulated devices");
    await Promise.all(devices.map((device) => device.stop()));
    process.exit(0);
  };
  process.on("SIGINT", () => void stopAll("SIGINT"));
  process.on("SIGTERM", () => void stopAll("SIGTERM"));

  for (const { deviceId, token } of all.slice(0, count)) {
    const device = await startSimDevice({
      deviceId,
      token,
      mqttUrl: values.mqtt,
      tls,
      stateDir,
      sampleIntervalMs,
      logger,
    });
    devices.push(device);
    logger.info({ device: deviceId, ...device.meters() }, "simulated device booted");
  }
}

main().catch((error: unknown) => {
  logger.error({ err: error instanceof Error ? error.message : String(error) }, "simulator failed");
  process.exit(1);
});
