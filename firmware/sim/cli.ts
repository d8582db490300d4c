// Runs simulated devices against an MQTT broker until SIGINT/SIGTERM, logging JSON lines:
//   tsx firmware/sim/cli.ts --credentials devices.json --mqtt mqtt://127.0.0.1:1883
//       [--count N] [--state-dir DIR] [--interval-ms MS] [--ca ca.pem [--cert cert.pem --key key.pem]]
//       [--seed N] [--virtual [--start ISO] [--duration 24h] | --rate R] [--fault SPEC ...]
// The credentials file is { "devices": [ { "deviceId": "...", "token": "..." } ] }. With an mqtts://
// broker, --ca is the CA its certificate must lead to; --cert/--key give every device that client
// certificate for mutual TLS. --virtual runs discrete-event virtual time (as fast as the work
// allows; with --duration it stops after that much device time), --rate R runs R times real time.
// Faults are given as --fault SPEC at start, or typed on stdin while it runs (`help` lists them).

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { isDeviceId } from "@kestrel/wire";
import { FastClock, type SimClock, type SimDevice, type SimLogger, startSimDevice, VirtualClock } from "./index.ts";

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

const FAULT_HELP = `fault specs: [DEVICE|*] KIND ARGS
  disconnect ADDR [off]     the I2C device at ADDR (e.g. 0x76) NACKs
  stuck [off]               SDA held low: every I2C transaction times out
  corrupt ADDR [P]          reads from ADDR get a bit flip with probability P (default 1; 0 ends it)
  clock DELTA_MS            the wall clock jumps by DELTA_MS (negative: backwards)
  hang SUBSYSTEM            a firmware subsystem (sampling, connectivity) stops until the next reset
  power [OFF_MS]            power loss now; the device boots again after OFF_MS (default 1000)
  power-at-write N [OFF_MS] power loss in the middle of the N-th flash write from now (a torn write)
  link-drop-after-publish   the next telemetry publish is lost with the connection, which drops`;

/** Applies one fault spec ("[device|*] kind args") to the devices it names. */
async function applyFault(spec: string, devices: readonly SimDevice[]): Promise<void> {
  const words = spec.trim().split(/\s+/);
  const named = devices.find((device) => device.deviceId === words[0]);
  const targets = words[0] === "*" ? devices : named ? [named] : undefined;
  const [kind, ...args] = targets ? words.slice(1) : words;
  const number = (value: string | undefined, what: string): number => {
    const parsed = Number(value);
    if (value === undefined || !Number.isFinite(parsed)) throw new Error(`${kind}: ${what} must be a number`);
    return parsed;
  };
  const off = args.includes("off");
  for (const device of targets ?? devices) {
    const faults = device.faults;
    switch (kind) {
      case "disconnect":
        faults.disconnectSensor(number(args[0], "ADDR"), !off);
        break;
      case "stuck":
        faults.stickBus(!off);
        break;
      case "corrupt":
        faults.corruptReads(number(args[0], "ADDR"), args[1] === undefined ? 1 : number(args[1], "P"));
        break;
      case "clock":
        faults.jumpClock(number(args[0], "DELTA_MS"));
        break;
      case "hang":
        if (!args[0]) throw new Error("hang: SUBSYSTEM is required");
        device.hang(args[0]);
        break;
      case "power":
        await faults.powerLoss({ offMs: args[0] === undefined ? undefined : number(args[0], "OFF_MS") });
        break;
      case "power-at-write":
        await faults.powerLoss({
          atFlashWrite: number(args[0], "N"),
          offMs: args[1] === undefined ? undefined : number(args[1], "OFF_MS"),
        });
        break;
      case "link-drop-after-publish":
        faults.dropLinkAfterPublish();
        break;
      default:
        throw new Error(`unknown fault "${kind ?? ""}"\n${FAULT_HELP}`);
    }
  }
  logger.info({ fault: spec, devices: (targets ?? devices).map((device) => device.deviceId) }, "fault injected");
}

/** "90s", "15m", "24h", "2d" or plain milliseconds. */
function duration(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!match) throw new Error(`--duration must look like 90s, 15m, 24h or 2d, got ${value}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "ms"] ?? 1;
  return Number(match[1]) * unit;
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
      seed: { type: "string" },
      virtual: { type: "boolean", default: false },
      start: { type: "string" },
      duration: { type: "string" },
      rate: { type: "string" },
      fault: { type: "string", multiple: true, default: [] },
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
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const runFor = duration(values.duration);
  const start = values.start === undefined ? undefined : Date.parse(values.start);
  if (start !== undefined && Number.isNaN(start)) throw new Error(`--start must be an ISO date, got ${values.start}`);
  const rate = positiveInteger(values.rate, "--rate");
  if (values.virtual && rate !== undefined) throw new Error("--virtual and --rate exclude each other");
  if (runFor !== undefined && !values.virtual) throw new Error("--duration needs --virtual");
  // Devices share one clock, so their virtual times stay in step with each other.
  const virtual = values.virtual ? new VirtualClock({ start }) : undefined;
  const clock: SimClock | undefined = virtual ?? (rate === undefined ? undefined : new FastClock(rate, start));

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

  for (const [index, { deviceId, token }] of all.slice(0, count).entries()) {
    const device = await startSimDevice({
      deviceId,
      token,
      mqttUrl: values.mqtt,
      tls,
      stateDir,
      sampleIntervalMs,
      logger,
      clock,
      seed: seed === undefined ? undefined : seed + index,
    });
    devices.push(device);
    logger.info({ device: deviceId, ...device.meters() }, "simulated device booted");
  }
  for (const spec of values.fault) await applyFault(spec, devices);

  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() === "") return;
    if (line.trim() === "help") {
      process.stderr.write(`${FAULT_HELP}\n`);
      return;
    }
    applyFault(line, devices).catch((error: unknown) =>
      logger.warn({ err: error instanceof Error ? error.message : String(error) }, "fault not injected"),
    );
  });

  if (virtual && runFor !== undefined) {
    await virtual.runUntil(virtual.now() + runFor);
    const meters = devices.map((device) => ({ device: device.deviceId, ...device.meters() }));
    logger.info({ virtualMs: runFor, meters }, "virtual duration reached");
    await stopAll("duration");
  }
}

main().catch((error: unknown) => {
  logger.error({ err: error instanceof Error ? error.message : String(error) }, "simulator failed");
  process.exit(1);
});
