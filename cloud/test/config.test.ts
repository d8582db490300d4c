import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, loadConfig, REPO_ROOT } from "../src/config.ts";

test("defaults run on a laptop", () => {
  assert.deepEqual(loadConfig({}), {
    port: 8080,
    host: "127.0.0.1",
    mongoUri: undefined,
    embeddedBackend: "sqlite",
    mongoDb: "kestrel",
    dataDir: join(REPO_ROOT, ".data"),
    sessionTtlSeconds: 28_800,
    logLevel: "info",
    dashboardDir: join(REPO_ROOT, "cloud", "dashboard", "dist"),
    exportScheduler: true,
    exportFileTtlDays: 7,
    exportAllowedLatenessSeconds: 15,
    exportMaxWaitSeconds: 300,
    webhookAllowedNetworks: [],
    secretsKey: undefined,
    webhookDispatcher: true,
    opsToken: undefined,
    sentryDsn: undefined,
    sentryEnvironment: "production",
    alertSweepSeconds: 5,
    trustProxy: false,
    rateLimits: { perCredential: 6000, perAnonymousClient: 600, perGateway: 120_000 },
    artifactMaxBytes: 16 * 1024 * 1024,
    otaTickMs: 2000,
    otaOfferLeaseMs: 60_000,
  });
});

test("values from the environment are used", () => {
  const config = loadConfig({
    PORT: "0",
    HOST: "0.0.0.0",
    MONGODB_URI: "mongodb+srv://cluster.example.net/",
    MONGODB_DB: "kestrel_test",
    DATA_DIR: "/var/lib/kestrel",
    SESSION_TTL: "3600",
    LOG_LEVEL: "debug",
    EXPORT_SCHEDULER: "off",
    EXPORT_FILE_TTL_DAYS: "30",
    WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8, fd00::/8",
    SECRETS_KEY: Buffer.alloc(32, 7).toString("base64"),
    WEBHOOK_DISPATCHER: "off",
    OPS_TOKEN: "scrape-token-0123456789",
    SENTRY_DSN: "https://public@sentry.example.com/42",
    SENTRY_ENVIRONMENT: "staging",
    ALERT_SWEEP_SECONDS: "2",
    TRUST_PROXY: "10.0.0.0/8, 192.0.2.1",
    RATE_LIMIT_PER_MINUTE: "100",
    EXPORT_ALLOWED_LATENESS: "30",
    EXPORT_MAX_WAIT: "900",
    FERRETDB_BACKEND: "postgresql",
    ARTIFACT_MAX_BYTES: "4194304",
    OTA_TICK_MS: "500",
    OTA_OFFER_LEASE_MS: "30000",
  });
  assert.equal(config.embeddedBackend, "postgresql");
  assert.equal(config.webhookDispatcher, false);
  assert.equal(config.opsToken, "scrape-token-0123456789");
  assert.equal(config.sentryDsn, "https://public@sentry.example.com/42");
  assert.equal(config.sentryEnvironment, "staging");
  assert.equal(config.alertSweepSeconds, 2);
  assert.deepEqual(config.trustProxy, ["10.0.0.0/8", "192.0.2.1"]);
  assert.equal(config.rateLimits.perCredential, 100);
  assert.equal(config.exportAllowedLatenessSeconds, 30);
  assert.equal(config.exportMaxWaitSeconds, 900);
  assert.equal(config.port, 0);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.mongoUri, "mongodb+srv://cluster.example.net/");
  assert.equal(config.mongoDb, "kestrel_test");
  assert.equal(config.dataDir, "/var/lib/kestrel");
  assert.equal(config.sessionTtlSeconds, 3600);
  assert.equal(config.logLevel, "debug");
  assert.equal(config.exportScheduler, false);
  assert.equal(config.exportFileTtlDays, 30);
  assert.deepEqual(config.webhookAllowedNetworks, ["127.0.0.0/8", "fd00::/8"]);
  assert.deepEqual(config.secretsKey, Buffer.alloc(32, 7));
  assert.equal(config.artifactMaxBytes, 4_194_304);
  assert.equal(config.otaTickMs, 500);
  assert.equal(config.otaOfferLeaseMs, 30_000);
});

test("bad values are refused with a message naming the variable", () => {
  for (const [env, message] of [
    [{ PORT: "80a" }, /PORT must be an integer between 0 and 65535, got "80a"/],
    [{ PORT: "70000" }, /PORT/],
    [{ SESSION_TTL: "10" }, /SESSION_TTL must be an integer between 60/],
    [{ MONGODB_URI: "http://localhost" }, /MONGODB_URI must start with mongodb:\/\//],
    [{ MONGODB_DB: "a.b" }, /MONGODB_DB/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL must be one of/],
    [{ EXPORT_SCHEDULER: "yes" }, /EXPORT_SCHEDULER must be on or off/],
    [{ EXPORT_FILE_TTL_DAYS: "0" }, /EXPORT_FILE_TTL_DAYS must be an integer between 1/],
    [{ WEBHOOK_ALLOWED_NETWORKS: "127.0.0.1" }, /WEBHOOK_ALLOWED_NETWORKS must be comma-separated CIDR/],
    [{ TRUST_PROXY: "proxy.local" }, /TRUST_PROXY must be off or proxy addresses/],
    [{ TRUST_PROXY: "10.0.0.0/40" }, /TRUST_PROXY/],
    [{ RATE_LIMIT_ANONYMOUS_PER_MINUTE: "0" }, /RATE_LIMIT_ANONYMOUS_PER_MINUTE must be an integer between 1/],
    [{ EXPORT_MAX_WAIT: "7200" }, /EXPORT_MAX_WAIT must be an integer between 0 and 3600/],
    [{ WEBHOOK_ALLOWED_NETWORKS: "10.0.0.0/33" }, /WEBHOOK_ALLOWED_NETWORKS/],
    [{ SECRETS_KEY: "c2hvcnQ=" }, /SECRETS_KEY must be 32 bytes in base64/],
    [{ WEBHOOK_DISPATCHER: "1" }, /WEBHOOK_DISPATCHER must be on or off/],
    [{ OPS_TOKEN: "short" }, /OPS_TOKEN must be 16..256 characters/],
    [{ SENTRY_DSN: "https://sentry.example.com/42" }, /SENTRY_DSN must be a DSN URL/],
    [{ SENTRY_DSN: "not a url" }, /SENTRY_DSN must be a DSN URL/],
    [{ ALERT_SWEEP_SECONDS: "0" }, /ALERT_SWEEP_SECONDS must be an integer between 1/],
    [{ FERRETDB_BACKEND: "mysql" }, /FERRETDB_BACKEND must be one of sqlite, postgresql, got "mysql"/],
    [{ ARTIFACT_MAX_BYTES: "12" }, /ARTIFACT_MAX_BYTES must be an integer between 1024/],
    [{ OTA_TICK_MS: "soon" }, /OTA_TICK_MS/],
    [{ OTA_OFFER_LEASE_MS: "0" }, /OTA_OFFER_LEASE_MS must be an integer between 1000/],
  ] as const) {
    assert.throws(
      () => loadConfig(env),
      (error: unknown) => error instanceof ConfigError && message.test(error.message),
    );
  }
});
