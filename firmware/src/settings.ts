// Reads the device settings from the build's `mc/config` (manifest `config`, or name=value
// arguments to mcconfig, which arrive as strings) and validates them once at boot.

import { isDeviceId, LIMITS } from "@kestrel/wire";

/**
 * The wire allows 100 samples a batch, but Moddable's lwIP socket throws on a message larger than
 * the free TCP send buffer (8 KB by default on ESP32): at ~90 bytes a sample, 50 keeps a worst-case
 * batch near 4.5 KB so it can always be sent.
 */
export const MAX_SAMPLES_PER_BATCH = Math.min(50, LIMITS.samplesPerBatch);

export interface DeviceSettings {
  deviceId: string;
  token: string;
  mqttHost: string;
  mqttPort: number;
  /** I2C pins of the sensor bus. */
  sda: number;
  scl: number;
  bmp280Address: number;
  sampleIntervalMs: number;
  samplesPerBatch: number;
  /** Batches held in RAM while the broker is unreachable. */
  outboxBatches: number;
}

function integer(config: Readonly<Record<string, unknown>>, key: string, min: number, max: number): number {
  const raw = config[key];
  const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)
    throw new Error(`config: ${key} must be an integer ${min}..${max}, got ${JSON.stringify(raw)}`);
  return value;
}

function text(config: Readonly<Record<string, unknown>>, key: string): string {
  const value = config[key];
  if (typeof value !== "string" || value.length === 0) throw new Error(`config: ${key} must be a non-empty string`);
  return value;
}

export function readSettings(config: Readonly<Record<string, unknown>>): DeviceSettings {
  const deviceId = text(config, "deviceId");
  if (!isDeviceId(deviceId)) throw new Error(`config: deviceId ${JSON.stringify(deviceId)} is not a valid device id`);
  return {
    deviceId,
    token: text(config, "token"),
    mqttHost: text(config, "mqttHost"),
    mqttPort: integer(config, "mqttPort", 1, 65535),
    sda: integer(config, "sda", 0, 63),
    scl: integer(config, "scl", 0, 63),
    bmp280Address: integer(config, "bmp280Address", 0x08, 0x77),
    sampleIntervalMs: integer(config, "sampleIntervalMs", 10, 3_600_000),
    samplesPerBatch: integer(config, "samplesPerBatch", 1, MAX_SAMPLES_PER_BATCH),
    outboxBatches: integer(config, "outboxBatches", 1, 1000),
  };
}
