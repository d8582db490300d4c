// The cloud's configuration, read once from the environment and validated,
// with defaults that run on a laptop (embedded FerretDB under DATA_DIR).

import { isIP } from "node:net";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_EMBEDDED_BACKEND, EMBEDDED_BACKENDS, type EmbeddedBackend } from "./storage/embedded-backend.ts";

export interface CloudConfig {
  port: number;
  host: string;
  /** Unset: start the embedded FerretDB under `dataDir`. */
  mongoUri: string | undefined;
  /** The embedded FerretDB's storage (FERRETDB_BACKEND), when MONGODB_URI is unset. */
  embeddedBackend: EmbeddedBackend;
  mongoDb: string;
  dataDir: string;
  sessionTtlSeconds: number;
  logLevel: string;
  /** The built dashboard bundle served at `/`. */
  dashboardDir: string;
  /** Whether this replica runs scheduled exports (EXPORT_SCHEDULER=on|off). */
  exportScheduler: boolean;
  /** Days a scheduled export's stored file is kept (EXPORT_FILE_TTL_DAYS). */
  exportFileTtlDays: number;
  /** Seconds after a tick that device samples may still arrive, beyond what gateways report (EXPORT_ALLOWED_LATENESS). */
  exportAllowedLatenessSeconds: number;
  /** The longest a scheduled export waits for its organization's gateways (EXPORT_MAX_WAIT, seconds). */
  exportMaxWaitSeconds: number;
  /** Private networks (CIDR) webhooks may reach anyway (WEBHOOK_ALLOWED_NETWORKS, comma-separated). */
  webhookAllowedNetworks: string[];
  /** AES-256 key for secrets the cloud reads back (SECRETS_KEY, base64); unset: one generated under dataDir. */
  secretsKey: Buffer | undefined;
  /** Whether this replica delivers partner webhooks (WEBHOOK_DISPATCHER=on|off; one replica at a time does). */
  webhookDispatcher: boolean;
  /**
   * The operations token (OPS_TOKEN): scrapers of /metrics must present it as a bearer token when
   * set, and it is required to change the log level at run time (PUT /ops/log-level).
   */
  opsToken: string | undefined;
  /** Sentry DSN (SENTRY_DSN): errors are reported there when set, by the cloud and the dashboard. */
  sentryDsn: string | undefined;
  /** Sentry environment tag (SENTRY_ENVIRONMENT). */
  sentryEnvironment: string;
  /** How often the alert engine checks offline devices, reset windows and system metrics (ALERT_SWEEP_SECONDS). */
  alertSweepSeconds: number;
  /**
   * Which proxies' X-Forwarded-For to believe for the client's address (TRUST_PROXY): false (the
   * socket's peer is the client), or the proxies' addresses and CIDRs.
   */
  trustProxy: false | string[];
  /** Requests a minute per credential, per anonymous client address and per gateway key (RATE_LIMIT_*). */
  rateLimits: RateLimits;
  /** The largest artifact (firmware image, plugin, model) an upload may carry (ARTIFACT_MAX_BYTES). */
  artifactMaxBytes: number;
  /** How often the campaign runner soaks and advances stages (OTA_TICK_MS). */
  otaTickMs: number;
  /**
   * An artifact offer with no report from its device for this long is made again (OTA_OFFER_LEASE_MS):
   * an offer lost on the way (a gateway that dropped its poll, a device offline) costs at most this.
   */
  otaOfferLeaseMs: number;
}

export interface RateLimits {
  perCredential: number;
  perAnonymousClient: number;
  perGateway: number;
}

export class ConfigError extends Error {
  readonly code = "invalid_config";
}

type Env = Record<string, string | undefined>;

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
// MongoDB forbids these in database names; the length cap is its own.
const DB_NAME = /^[^/\\. "$*<>:|?]{1,63}$/;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

function onOff(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw !== "on" && raw !== "off") throw new ConfigError(`${name} must be on or off, got "${raw}"`);
  return raw === "on";
}

function networks(env: Env, name: string): string[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return [];
  return raw.split(",").map((entry) => {
    const cidr = entry.trim();
    const [address = "", prefix, ...rest] = cidr.split("/");
    const family = isIP(address);
    const bits = family === 6 ? 128 : 32;
    if (family === 0 || prefix === undefined || rest.length > 0 || !/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) {
      throw new ConfigError(`${name} must be comma-separated CIDR networks (e.g. 10.0.0.0/8), got "${cidr}"`);
    }
    return cidr;
  });
}

function secretsKey(env: Env): Buffer | undefined {
  const raw = env.SECRETS_KEY;
  if (raw === undefined || raw === "") return undefined;
  const key = Buffer.from(raw, "base64");
  if (key.length !== 32 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(raw)) {
    throw new ConfigError("SECRETS_KEY must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)");
  }
  return key;
}

function secretToken(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  if (!/^[A-Za-z0-9._~+/-]{16,256}$/.test(raw)) {
    throw new ConfigError(`${name} must be 16..256 characters of A-Z a-z 0-9 . _ ~ + / -`);
  }
  return raw;
}

function sentryDsn(env: Env): string | undefined {
  const raw = env.SENTRY_DSN;
  if (raw === undefined || raw === "") return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError("SENTRY_DSN must be a DSN URL like https://<key>@<host>/<project>");
  }
  if (!/^https?:$/.test(url.protocol) || url.username === "" || !/^\/.*\d+$/.test(url.pathname)) {
    throw new ConfigError("SENTRY_DSN must be a DSN URL like https://<key>@<host>/<project>");
  }
  return raw;
}

function mongoUri(env: Env): string | undefined {
  const raw = env.MONGODB_URI;
  if (raw === undefined || raw === "") return undefined;
  if (!raw.startsWith("mongodb://") && !raw.startsWith("mongodb+srv://")) {
    throw new ConfigError("MONGODB_URI must start with mongodb:// or mongodb+srv://");
  }
  return raw;
}

function embeddedBackend(env: Env): EmbeddedBackend {
  const raw = env.FERRETDB_BACKEND;
  if (raw === undefined || raw === "") return DEFAULT_EMBEDDED_BACKEND;
  const backend = EMBEDDED_BACKENDS.find((name) => name === raw);
  if (!backend) throw new ConfigError(`FERRETDB_BACKEND must be one of ${EMBEDDED_BACKENDS.join(", ")}, got "${raw}"`);
  return backend;
}

function directory(env: Env, name: string, fallback: string): string {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  return isAbsolute(raw) ? raw : resolve(raw);
}

/**
 * TRUST_PROXY: unset/off, or comma-separated addresses and CIDRs of the reverse proxies in front of
 * the cloud; only what they append to X-Forwarded-For is believed.
 */
function trustProxy(env: Env): false | string[] {
  const raw = env.TRUST_PROXY?.trim();
  if (raw === undefined || raw === "" || raw === "off") return false;
  return raw.split(",").map((entry) => {
    const value = entry.trim();
    const [address = "", prefix] = value.split("/");
    const bits = isIP(address) === 6 ? 128 : 32;
    if (isIP(address) === 0 || (prefix !== undefined && (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits))) {
      throw new ConfigError(`TRUST_PROXY must be off or proxy addresses/CIDRs (e.g. 10.0.0.0/8), got "${value}"`);
    }
    return value;
  });
}

export function loadConfig(env: Env = process.env): CloudConfig {
  const logLevel = env.LOG_LEVEL || "info";
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}`);
  const mongoDb = env.MONGODB_DB || "kestrel";
  if (!DB_NAME.test(mongoDb)) {
    throw new ConfigError(`MONGODB_DB must be 1..63 characters without / \\ . " $ * < > : | ? or spaces`);
  }
  return {
    port: integer(env, "PORT", 8080, 0, 65535),
    host: env.HOST || "127.0.0.1",
    mongoUri: mongoUri(env),
    embeddedBackend: embeddedBackend(env),
    mongoDb,
    dataDir: directory(env, "DATA_DIR", join(REPO_ROOT, ".data")),
    sessionTtlSeconds: integer(env, "SESSION_TTL", 8 * 3600, 60, 30 * 86400),
    logLevel,
    dashboardDir: directory(env, "DASHBOARD_DIR", join(REPO_ROOT, "cloud", "dashboard", "dist")),
    exportScheduler: onOff(env, "EXPORT_SCHEDULER", true),
    exportFileTtlDays: integer(env, "EXPORT_FILE_TTL_DAYS", 7, 1, 3650),
    exportAllowedLatenessSeconds: integer(env, "EXPORT_ALLOWED_LATENESS", 15, 0, 3600),
    exportMaxWaitSeconds: integer(env, "EXPORT_MAX_WAIT", 300, 0, 3600),
    webhookAllowedNetworks: networks(env, "WEBHOOK_ALLOWED_NETWORKS"),
    secretsKey: secretsKey(env),
    webhookDispatcher: onOff(env, "WEBHOOK_DISPATCHER", true),
    opsToken: secretToken(env, "OPS_TOKEN"),
    sentryDsn: sentryDsn(env),
    sentryEnvironment: env.SENTRY_ENVIRONMENT || "production",
    alertSweepSeconds: integer(env, "ALERT_SWEEP_SECONDS", 5, 1, 3600),
    trustProxy: trustProxy(env),
    rateLimits: {
      perCredential: integer(env, "RATE_LIMIT_PER_MINUTE", 6000, 1, 10_000_000),
      perAnonymousClient: integer(env, "RATE_LIMIT_ANONYMOUS_PER_MINUTE", 600, 1, 10_000_000),
      perGateway: integer(env, "RATE_LIMIT_GATEWAY_PER_MINUTE", 120_000, 1, 10_000_000),
    },
    artifactMaxBytes: integer(env, "ARTIFACT_MAX_BYTES", 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    otaTickMs: integer(env, "OTA_TICK_MS", 2000, 50, 600_000),
    otaOfferLeaseMs: integer(env, "OTA_OFFER_LEASE_MS", 60_000, 1000, 86_400_000),
  };
}
