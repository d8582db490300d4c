// Reads the device settings from the build's `mc/config` (manifest `config`, or name=value
// arguments to mcconfig, which arrive as strings) and validates them once at boot.

import { isDeviceId, LIMITS } from "@kestrel/wire";
import { formatSensorList, parseSensorList, type SensorSpec } from "kestrel/sensor-config";

/**
 * The wire allows 100 samples a batch, but a batch must fit in two places on the device: Moddable's
 * lwIP socket throws on a message larger than the free TCP send buffer (8 KB by default on ESP32),
 * and a batch kept offline is one record in a 4 KB flash sector (4,084 bytes of payload). At most
 * ~84 bytes a sample, 45 keeps a worst-case batch at 3,772 bytes.
 */
export const MAX_SAMPLES_PER_BATCH = Math.min(45, LIMITS.samplesPerBatch);

export interface DeviceSettings {
  deviceId: string;
  token: string;
  mqttHost: string;
  mqttPort: number;
  /** MQTT over TLS, the server verified against the CA resource `mqttCa` (DER). */
  mqttTls: boolean;
  mqttCa: string;
  /** For mutual TLS: resources holding the device's certificate and PKCS#8 key (DER); "" for none. */
  mqttClientCert: string;
  mqttClientKey: string;
  /** I2C pins of the sensor bus. */
  sda: number;
  scl: number;
  bmp280Address: number;
  /** Sensors on the bus (config `sensors`, e.g. "bmp280@0x76,sht3x@0x44"); "" means a BMP280 at bmp280Address. */
  sensors: SensorSpec[];
  /** SPI bus pins for sensors listed as "kind@spi:<select>" (config spiIn, spiOut, spiClock; VSPI by default). */
  spi: { in: number; out: number; clock: number };
  sampleIntervalMs: number;
  samplesPerBatch: number;
  /** Data partition (partitions.csv) holding the ring of batches not sent yet. */
  flashPartition: string;
  /** GPIO of the status LED the identify command blinks. */
  ledPin: number;
  /** Data partition holding the ring of log records (info and above) not shipped yet. */
  logPartition: string;
  /** Data partition holding the plugins' modules; "" runs no plugins. */
  pluginPartition: string;
  /** A subsystem silent this long (beyond its own period) makes the software watchdog reboot the device. */
  watchdogTimeoutMs: number;
  /** This many abnormal resets in a row, none followed by safeModeWindowMs of clean running: safe mode. */
  safeModeAfterResets: number;
  safeModeWindowMs: number;
  /** The device state (uptime, heap, rssi, dropped) is published this often while connected, and at every connect. */
  stateIntervalMs: number;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export function isLogLevel(value: unknown): value is LogLevel {
  return value === "debug" || value === "info" || value === "warn" || value === "error";
}

/**
 * What the set-config command may change at run time; persisted in preference across reboots. Its
 * parameters are sample_interval_ms, log_level, temperature_low, temperature_high (the wire allows
 * only snake_case names in command params and results).
 */
export interface RuntimeConfig {
  sampleIntervalMs: number;
  logLevel: LogLevel;
  /** A reading outside [temperatureLow, temperatureHigh] (°C) is logged as a warning. */
  temperatureLow?: number;
  temperatureHigh?: number;
  /** Overrides the build's sensor list (normalized "kind@address" text). */
  sensors?: string;
}

const SAMPLE_INTERVAL_MIN_MS = 10;
const SAMPLE_INTERVAL_MAX_MS = 3_600_000;
/** The BMP280's operating range. */
const TEMPERATURE_MIN = -40;
const TEMPERATURE_MAX = 85;

function integer(config: Readonly<Record<string, unknown>>, key: string, min: number, max: number): number {
  const raw = config[key];
  const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)
    throw new Error(`config: ${key} must be an integer ${min}..${max}, got ${JSON.stringify(raw)}`);
  return value;
}

function optionalText(config: Readonly<Record<string, unknown>>, key: string): string {
  const value = config[key] ?? "";
  if (typeof value !== "string") throw new Error(`config: ${key} must be a string`);
  return value;
}

function text(config: Readonly<Record<string, unknown>>, key: string): string {
  const value = config[key];
  if (typeof value !== "string" || value.length === 0) throw new Error(`config: ${key} must be a non-empty string`);
  return value;
}

/** A setting that builds from before it existed do not carry: its default when absent. */
function integerOr(
  config: Readonly<Record<string, unknown>>,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return config[key] === undefined ? fallback : integer(config, key, min, max);
}

function sensorSpecs(config: Readonly<Record<string, unknown>>): SensorSpec[] {
  const specs = parseSensorList(optionalText(config, "sensors"));
  return specs.length > 0
    ? specs
    : [{ kind: "bmp280", bus: "i2c", address: integer(config, "bmp280Address", 0x08, 0x77) }];
}

export function readSettings(config: Readonly<Record<string, unknown>>): DeviceSettings {
  const deviceId = text(config, "deviceId");
  if (!isDeviceId(deviceId)) throw new Error(`config: deviceId ${JSON.stringify(deviceId)} is not a valid device id`);
  const mqttClientCert = optionalText(config, "mqttClientCert");
  if ((mqttClientCert === "") !== (optionalText(config, "mqttClientKey") === ""))
    throw new Error("config: mqttClientCert and mqttClientKey go together");
  if (integer(config, "mqttTls", 0, 1) === 1 && optionalText(config, "mqttCa") === "")
    throw new Error("config: mqttTls needs mqttCa, the resource holding the CA certificate");
  return {
    deviceId,
    token: text(config, "token"),
    mqttHost: text(config, "mqttHost"),
    mqttPort: integer(config, "mqttPort", 1, 65535),
    mqttTls: integer(config, "mqttTls", 0, 1) === 1,
    mqttCa: optionalText(config, "mqttCa"),
    mqttClientCert: optionalText(config, "mqttClientCert"),
    mqttClientKey: optionalText(config, "mqttClientKey"),
    sda: integer(config, "sda", 0, 63),
    scl: integer(config, "scl", 0, 63),
    bmp280Address: integer(config, "bmp280Address", 0x08, 0x77),
    sensors: sensorSpecs(config),
    spi: {
      in: integerOr(config, "spiIn", 19, 0, 63),
      out: integerOr(config, "spiOut", 23, 0, 63),
      clock: integerOr(config, "spiClock", 18, 0, 63),
    },
    sampleIntervalMs: integer(config, "sampleIntervalMs", SAMPLE_INTERVAL_MIN_MS, SAMPLE_INTERVAL_MAX_MS),
    samplesPerBatch: integer(config, "samplesPerBatch", 1, MAX_SAMPLES_PER_BATCH),
    flashPartition: text(config, "flashPartition"),
    ledPin: integer(config, "ledPin", 0, 63),
    logPartition: text(config, "logPartition"),
    pluginPartition: optionalText(config, "pluginPartition"),
    watchdogTimeoutMs: integer(config, "watchdogTimeoutMs", 1_000, 3_600_000),
    safeModeAfterResets: integer(config, "safeModeAfterResets", 2, 100),
    safeModeWindowMs: integer(config, "safeModeWindowMs", 10_000, 86_400_000),
    stateIntervalMs: integerOr(config, "stateIntervalMs", 60_000, 1_000, 86_400_000),
  };
}

function temperature(key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < TEMPERATURE_MIN || value > TEMPERATURE_MAX)
    throw new Error(`${key} must be a number ${TEMPERATURE_MIN}..${TEMPERATURE_MAX}`);
  return value;
}

/**
 * The configuration params (all or nothing) would produce; throws an Error naming the first bad
 * parameter, so a command fails with a reason and the running configuration stays untouched.
 */
export function applyConfigParams(current: RuntimeConfig, params: Readonly<Record<string, unknown>>): RuntimeConfig {
  const next: RuntimeConfig = { ...current };
  const keys = Object.keys(params);
  if (keys.length === 0) throw new Error("no parameter given");
  for (const key of keys) {
    const value = params[key];
    switch (key) {
      case "sample_interval_ms":
        if (
          typeof value !== "number" ||
          !Number.isInteger(value) ||
          value < SAMPLE_INTERVAL_MIN_MS ||
          value > SAMPLE_INTERVAL_MAX_MS
        )
          throw new Error(`sample_interval_ms must be an integer ${SAMPLE_INTERVAL_MIN_MS}..${SAMPLE_INTERVAL_MAX_MS}`);
        next.sampleIntervalMs = value;
        break;
      case "log_level":
        if (!isLogLevel(value)) throw new Error("log_level must be debug, info, warn or error");
        next.logLevel = value;
        break;
      case "temperature_low":
        next.temperatureLow = temperature(key, value);
        break;
      case "temperature_high":
        next.temperatureHigh = temperature(key, value);
        break;
      case "sensors": {
        if (typeof value !== "string") throw new Error('sensors must be a list such as "bmp280@0x76,sht3x@0x44"');
        const specs = parseSensorList(value);
        if (specs.length === 0) throw new Error("sensors must name at least one sensor");
        next.sensors = formatSensorList(specs);
        break;
      }
      default:
        throw new Error(`unknown parameter ${key}`);
    }
  }
  if (
    next.temperatureLow !== undefined &&
    next.temperatureHigh !== undefined &&
    next.temperatureLow >= next.temperatureHigh
  )
    throw new Error("temperature_low must be below temperature_high");
  return next;
}

/** The set-config parameters that describe config: what is persisted and what the done ack reports. */
export function configParams(config: RuntimeConfig): Record<string, string | number> {
  const params: Record<string, string | number> = {
    sample_interval_ms: config.sampleIntervalMs,
    log_level: config.logLevel,
  };
  if (config.temperatureLow !== undefined) params.temperature_low = config.temperatureLow;
  if (config.temperatureHigh !== undefined) params.temperature_high = config.temperatureHigh;
  if (config.sensors !== undefined) params.sensors = config.sensors;
  return params;
}

/** A persisted configuration, or undefined when it is missing or no longer valid. */
export function parseRuntimeConfig(text: unknown, defaults: RuntimeConfig): RuntimeConfig | undefined {
  if (typeof text !== "string") return undefined;
  try {
    const saved: unknown = JSON.parse(text);
    if (typeof saved !== "object" || saved === null || Array.isArray(saved)) return undefined;
    return applyConfigParams(defaults, saved as Record<string, unknown>);
  } catch {
    return undefined;
  }
}
