// The cloud's configuration, read once from the environment and validated,
// with defaults that run on a laptop (embedded FerretDB under DATA_DIR).

import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface CloudConfig {
  port: number;
  host: string;
  /** Unset: start the embedded FerretDB under `dataDir`. */
  mongoUri: string | undefined;
  mongoDb: string;
  dataDir: string;
  sessionTtlSeconds: number;
  logLevel: string;
  /** The built dashboard bundle served at `/`. */
  dashboardDir: string;
  /** Whether this replica runs scheduled exports (EXPORT_SCHEDULER=on|off). */
  exportScheduler: boolean;
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

function mongoUri(env: Env): string | undefined {
  const raw = env.MONGODB_URI;
  if (raw === undefined || raw === "") return undefined;
  if (!raw.startsWith("mongodb://") && !raw.startsWith("mongodb+srv://")) {
    throw new ConfigError("MONGODB_URI must start with mongodb:// or mongodb+srv://");
  }
  return raw;
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
    mongoDb,
    dataDir: directory(env, "DATA_DIR", join(REPO_ROOT, ".data")),
    sessionTtlSeconds: integer(env, "SESSION_TTL", 8 * 3600, 60, 30 * 86400),
    logLevel,
    dashboardDir: directory(env, "DASHBOARD_DIR", join(REPO_ROOT, "cloud", "dashboard", "dist")),
    exportScheduler: onOff(env, "EXPORT_SCHEDULER", true),
  };
}
