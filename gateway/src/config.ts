// The gateway's configuration, read once from the environment and validated,
// with defaults that run on a laptop next to a local cloud.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const DEFAULT_DATA_DIR = fileURLToPath(new URL("../../.data/gateway", import.meta.url));

export interface GatewayConfig {
  mqttHost: string;
  /** Plain MQTT over TCP; undefined when MQTT_PORT is "off" (then only the TLS listener serves). */
  mqttPort: number | undefined;
  httpHost: string;
  httpPort: number;
  cloudUrl: string;
  gatewayKey: string;
  forwardIntervalMs: number;
  forwardMaxBatches: number;
  /** Ingest requests in flight to the cloud at once. */
  forwardConcurrency: number;
  /** Where the durable uplink queue lives. */
  dataDir: string;
  queueMaxBytes: number;
  authCacheTtlMs: number;
  /** While the cloud cannot answer, a device it accepted this recently (same token) is still let in. */
  authStaleMaxMs: number;
  cloudTimeoutMs: number;
  logLevel: string;
  /** MQTT over TLS; undefined when MQTT_TLS_PORT is unset. */
  tls: TlsListenerConfig | undefined;
  /** Bridge to this broker instead of running the embedded one; undefined when EXTERNAL_BROKER_URL is unset. */
  externalBroker: ExternalBrokerConfig | undefined;
}

export interface ExternalBrokerConfig {
  /** mqtt://host:port or mqtts://host:port */
  url: string;
  /** The gateway's persistent session on that broker: keep it stable across restarts. */
  clientId: string;
  username: string | undefined;
  password: string | undefined;
  /** PEM CA for an mqtts:// broker whose certificate no public CA signed. */
  ca: string | undefined;
}

export interface TlsListenerConfig {
  port: number;
  /** PEM: the server certificate followed by its chain (devices' securesocket needs the full chain). */
  certChain: string;
  key: string;
  /** PEM CA that signs device client certificates; set to allow mutual TLS. */
  clientCa: string | undefined;
}

export class ConfigError extends Error {
  readonly code = "invalid_config";
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

function url(env: Env, name: string, fallback: string): string {
  const raw = env[name] || fallback;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be an absolute http(s) URL, got "${raw}"`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new ConfigError(`${name} must use http or https, got "${parsed.protocol}"`);
  }
  return raw.replace(/\/+$/, "");
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

export function loadGatewayConfig(env: Env = process.env): GatewayConfig {
  const gatewayKey = env.GATEWAY_KEY ?? "";
  if (gatewayKey.length < 16) {
    throw new ConfigError("GATEWAY_KEY must be set to the gateway key issued by the cloud (at least 16 characters)");
  }
  const logLevel = env.LOG_LEVEL || "info";
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}`);
  const tls = tlsListener(env);
  const plainOff = env.MQTT_PORT === "off";
  if (plainOff && !tls) throw new ConfigError('MQTT_PORT may be "off" only when MQTT_TLS_PORT is set');
  return {
    mqttHost: env.MQTT_HOST || "127.0.0.1",
    mqttPort: plainOff ? undefined : integer(env, "MQTT_PORT", 1883, 0, 65535),
    httpHost: env.GATEWAY_HTTP_HOST || "127.0.0.1",
    httpPort: integer(env, "GATEWAY_HTTP_PORT", 8081, 0, 65535),
    cloudUrl: url(env, "CLOUD_URL", "http://127.0.0.1:8080"),
    gatewayKey,
    forwardIntervalMs: integer(env, "FORWARD_INTERVAL_MS", 250, 10, 60_000),
    forwardMaxBatches: integer(env, "FORWARD_MAX_BATCHES", 200, 1, 500),
    forwardConcurrency: integer(env, "FORWARD_CONCURRENCY", 4, 1, 16),
    dataDir: resolve(env.GATEWAY_DATA_DIR || DEFAULT_DATA_DIR),
    queueMaxBytes: integer(env, "QUEUE_MAX_BYTES", 1024 * 1024 * 1024, 1024 * 1024, Number.MAX_SAFE_INTEGER),
    authCacheTtlMs: integer(env, "AUTH_CACHE_TTL_MS", 60_000, 0, 86_400_000),
    authStaleMaxMs: integer(env, "AUTH_STALE_MAX_MS", 30 * 60_000, 0, 7 * 86_400_000),
    cloudTimeoutMs: integer(env, "CLOUD_TIMEOUT_MS", 10_000, 100, 120_000),
    logLevel,
    tls,
    externalBroker: externalBroker(env),
  };
}

function pemFile(env: Env, name: string): string {
  const path = env[name];
  if (!path) throw new ConfigError(`${name} must name a PEM file when MQTT_TLS_PORT is set`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${name}: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!text.includes("-----BEGIN ")) throw new ConfigError(`${name}: ${path} is not a PEM file`);
  return text;
}

function tlsListener(env: Env): TlsListenerConfig | undefined {
  if (env.MQTT_TLS_PORT === undefined || env.MQTT_TLS_PORT === "") return undefined;
  return {
    port: integer(env, "MQTT_TLS_PORT", 8883, 0, 65535),
    certChain: pemFile(env, "MQTT_TLS_CERT"),
    key: pemFile(env, "MQTT_TLS_KEY"),
    clientCa: env.MQTT_TLS_CLIENT_CA ? pemFile(env, "MQTT_TLS_CLIENT_CA") : undefined,
  };
}

function externalBroker(env: Env): ExternalBrokerConfig | undefined {
  const raw = env.EXTERNAL_BROKER_URL;
  if (raw === undefined || raw === "") return undefined;
  let protocol: string;
  try {
    protocol = new URL(raw).protocol;
  } catch {
    throw new ConfigError(`EXTERNAL_BROKER_URL must be mqtt://host:port or mqtts://host:port, got "${raw}"`);
  }
  if (protocol !== "mqtt:" && protocol !== "mqtts:") {
    throw new ConfigError(`EXTERNAL_BROKER_URL must use mqtt or mqtts, got "${protocol}"`);
  }
  return {
    url: raw,
    clientId: env.EXTERNAL_BROKER_CLIENT_ID || "kestrel-gateway",
    username: env.EXTERNAL_BROKER_USERNAME || undefined,
    password: env.EXTERNAL_BROKER_PASSWORD || undefined,
    ca: env.EXTERNAL_BROKER_CA ? pemFile(env, "EXTERNAL_BROKER_CA") : undefined,
  };
}
