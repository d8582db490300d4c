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
  /** Private networks (CIDR) webhooks may reach anyway (WEBHOOK_ALLOWED_NETWORKS, comma-separated). */
  webhookAllowedNetworks: string[];
  /** AES-256 key for secrets the cloud reads back (SECRETS_KEY, base64); unset: one generated under dataDir. */
  secretsKey: Buffer | undefined;
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
    webhookAllowedNetworks: networks(env, "WEBHOOK_ALLOWED_NETWORKS"),
    secretsKey: secretsKey(env),
  };
}
