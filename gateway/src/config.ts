// The gateway's configuration, read once from the environment and validated,
// with defaults that run on a laptop next to a local cloud.

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { delimiter, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const DEFAULT_DATA_DIR = fileURLToPath(new URL("../../.data/gateway", import.meta.url));

export interface GatewayConfig {
  mqttHost: string;
  /** Plain MQTT over TCP; undefined when MQTT_PORT is "off" (then only the TLS listener serves). */
  mqttPort: number | undefined;
  /** The longest MQTT packet a device may send (MQTT_MAX_PACKET_BYTES); a longer one closes its connection. */
  mqttMaxPacketBytes: number;
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
  /**
   * Processes running the embedded broker on the same ports, each with its own queues and devices
   * (GATEWAY_WORKERS): one Node process uses one core.
   */
  workers: number;
  /** How the gateway names itself to the cloud (GATEWAY_ID); unset: an id kept in dataDir. */
  gatewayId: string | undefined;
  /** How often the uplink's progress is reported to the cloud (UPLINK_REPORT_INTERVAL_MS). */
  uplinkReportIntervalMs: number;
  queueMaxBytes: number;
  authCacheTtlMs: number;
  /** While the cloud cannot answer, a device it accepted this recently (same token) is still let in. */
  authStaleMaxMs: number;
  cloudTimeoutMs: number;
  /** The operations token (OPS_TOKEN): required to change the log level at run time (PUT /log-level). */
  opsToken: string | undefined;
  logLevel: string;
  /** MQTT over TLS; undefined when MQTT_TLS_PORT is unset. */
  tls: TlsListenerConfig | undefined;
  /** Bridge to this broker instead of running the embedded one; undefined when EXTERNAL_BROKER_URL is unset. */
  externalBroker: ExternalBrokerConfig | undefined;
  /** The artifact cache (under dataDir/artifacts) and how devices download from it. */
  artifacts: ArtifactServingConfig;
}

export interface ArtifactServingConfig {
  /** Least recently used artifacts are evicted beyond this (ARTIFACT_CACHE_MAX_BYTES). */
  cacheMaxBytes: number;
  /** Devices downloading at once; more are told to come back later (ARTIFACT_MAX_DOWNLOADS). */
  maxDownloads: number;
  /** A download with no chunk request for this long frees its place (ARTIFACT_DOWNLOAD_IDLE_MS). */
  idleMs: number;
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

export interface TlsCertificate {
  /** PEM: the server certificate followed by its chain (devices' securesocket needs the full chain). */
  certChain: string;
  key: string;
}

export interface TlsListenerConfig {
  port: number;
  /**
   * One or more certificates, e.g. an ECDSA and an RSA one: TLS picks the one the client's suites
   * allow (Moddable's client offers ECDHE-ECDSA, ECDHE-RSA and DHE-RSA suites).
   */
  certificates: TlsCertificate[];
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

function gatewayId(env: Env): string | undefined {
  const raw = env.GATEWAY_ID;
  if (raw === undefined || raw === "") return undefined;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(raw)) throw new ConfigError("GATEWAY_ID must be 1..64 of A-Z a-z 0-9 _ -");
  return raw;
}

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

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
  const workers = integer(env, "GATEWAY_WORKERS", 1, 1, 64);
  const bridge = externalBroker(env);
  if (workers > 1 && bridge) {
    throw new ConfigError("GATEWAY_WORKERS applies to the embedded broker; with EXTERNAL_BROKER_URL it must be 1");
  }
  return {
    mqttHost: env.MQTT_HOST || "127.0.0.1",
    mqttPort: plainOff ? undefined : integer(env, "MQTT_PORT", 1883, 0, 65535),
    // A full batch of the wire's 100 samples, or a log batch, is a few KiB; MQTT's own limit is 256 MiB.
    mqttMaxPacketBytes: integer(env, "MQTT_MAX_PACKET_BYTES", 256 * 1024, 1024, 268_435_455),
    httpHost: env.GATEWAY_HTTP_HOST || "127.0.0.1",
    httpPort: integer(env, "GATEWAY_HTTP_PORT", 8081, 0, 65535),
    cloudUrl: url(env, "CLOUD_URL", "http://127.0.0.1:8080"),
    gatewayKey,
    forwardIntervalMs: integer(env, "FORWARD_INTERVAL_MS", 250, 10, 60_000),
    // The cloud's own limit (MAX_ITEMS): a request costs the gateway ~0.3 ms of CPU, 1.5 µs a message in
    // requests of 200; a light load sends what it has at each interval anyway.
    forwardMaxBatches: integer(env, "FORWARD_MAX_BATCHES", 500, 1, 500),
    forwardConcurrency: integer(env, "FORWARD_CONCURRENCY", 4, 1, 16),
    dataDir: resolve(env.GATEWAY_DATA_DIR || DEFAULT_DATA_DIR),
    workers,
    gatewayId: gatewayId(env),
    uplinkReportIntervalMs: integer(env, "UPLINK_REPORT_INTERVAL_MS", 5000, 100, 600_000),
    queueMaxBytes: integer(env, "QUEUE_MAX_BYTES", 1024 * 1024 * 1024, 1024 * 1024, Number.MAX_SAFE_INTEGER),
    authCacheTtlMs: integer(env, "AUTH_CACHE_TTL_MS", 60_000, 0, 86_400_000),
    authStaleMaxMs: integer(env, "AUTH_STALE_MAX_MS", 30 * 60_000, 0, 7 * 86_400_000),
    cloudTimeoutMs: integer(env, "CLOUD_TIMEOUT_MS", 10_000, 100, 120_000),
    opsToken: opsToken(env),
    logLevel,
    tls,
    externalBroker: bridge,
    artifacts: {
      cacheMaxBytes: integer(env, "ARTIFACT_CACHE_MAX_BYTES", 2 * 1024 ** 3, 1024 * 1024, Number.MAX_SAFE_INTEGER),
      maxDownloads: integer(env, "ARTIFACT_MAX_DOWNLOADS", 8, 1, 10_000),
      idleMs: integer(env, "ARTIFACT_DOWNLOAD_IDLE_MS", 30_000, 1000, 3_600_000),
    },
  };
}

function opsToken(env: Env): string | undefined {
  const raw = env.OPS_TOKEN;
  if (raw === undefined || raw === "") return undefined;
  if (!/^[A-Za-z0-9._~+/-]{16,256}$/.test(raw)) {
    throw new ConfigError("OPS_TOKEN must be 16..256 characters of A-Z a-z 0-9 . _ ~ + / -");
  }
  return raw;
}

function pemFile(name: string, path: string | undefined): string {
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

/** MQTT_TLS_CERT and MQTT_TLS_KEY list PEM files separated like PATH, paired in order; each key must be its certificate's. */
function certificatePairs(env: Env): TlsCertificate[] {
  const certs = (env.MQTT_TLS_CERT ?? "").split(delimiter).filter(Boolean);
  const keys = (env.MQTT_TLS_KEY ?? "").split(delimiter).filter(Boolean);
  if (certs.length !== keys.length)
    throw new ConfigError(
      `MQTT_TLS_CERT names ${certs.length} certificate file(s) and MQTT_TLS_KEY ${keys.length} key file(s): list them in pairs, separated by "${delimiter}"`,
    );
  if (certs.length === 0) return [pemPair(undefined, undefined)];
  return certs.map((cert, index) => pemPair(cert, keys[index]));
}

function pemPair(certPath: string | undefined, keyPath: string | undefined): TlsCertificate {
  const certChain = pemFile("MQTT_TLS_CERT", certPath);
  const key = pemFile("MQTT_TLS_KEY", keyPath);
  let matches: boolean;
  try {
    matches = new X509Certificate(certChain).checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new ConfigError(
      `MQTT_TLS_CERT/MQTT_TLS_KEY: ${certPath} or ${keyPath} is unreadable: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (!matches) throw new ConfigError(`MQTT_TLS_KEY: ${keyPath} is not the key of ${certPath}`);
  return { certChain, key };
}

function tlsListener(env: Env): TlsListenerConfig | undefined {
  if (env.MQTT_TLS_PORT === undefined || env.MQTT_TLS_PORT === "") return undefined;
  return {
    port: integer(env, "MQTT_TLS_PORT", 8883, 0, 65535),
    certificates: certificatePairs(env),
    clientCa: env.MQTT_TLS_CLIENT_CA ? pemFile("MQTT_TLS_CLIENT_CA", env.MQTT_TLS_CLIENT_CA) : undefined,
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
    ca: env.EXTERNAL_BROKER_CA ? pemFile("EXTERNAL_BROKER_CA", env.EXTERNAL_BROKER_CA) : undefined,
  };
}
