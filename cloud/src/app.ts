// Composes the cloud API from its capability plugins; holds no logic of its own.

import { randomUUID } from "node:crypto";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import type { Logger } from "pino";
import { alertsPlugin } from "./alerts/plugin.ts";
import { artifactsPlugin } from "./artifacts/plugin.ts";
import { accessPlugin } from "./auth/access.ts";
import { authPlugin } from "./auth/plugin.ts";
import { SecretBox } from "./auth/secret-box.ts";
import { commandsPlugin } from "./commands/plugin.ts";
import type { CloudConfig } from "./config.ts";
import { dashboardPlugin } from "./dashboard/plugin.ts";
import { devicesPlugin } from "./devices/plugin.ts";
import { exportsPlugin } from "./exports/plugin.ts";
import { gatewayApiPlugin } from "./gateway/plugin.ts";
import { healthPlugin } from "./health/plugin.ts";
import { inputHygienePlugin } from "./http/hygiene.ts";
import { problemDetailsPlugin, problemServerOptions } from "./http/problem.ts";
import { rateLimitPlugin } from "./http/rate-limit.ts";
import { securityHeadersPlugin } from "./http/security-headers.ts";
import { unusedConnectionsPlugin } from "./http/unused-connections.ts";
import { keysPlugin } from "./keys/plugin.ts";
import { logsPlugin } from "./logs/plugin.ts";
import { cloudMetricsPlugin } from "./metrics/plugin.ts";
import { ErrorTracker } from "./observability/error-tracking.ts";
import { createLogger } from "./observability/logger.ts";
import { observabilityPlugin } from "./observability/plugin.ts";
import { openApiPlugin } from "./openapi/plugin.ts";
import { otaPlugin } from "./ota/plugin.ts";
import { retentionPlugin } from "./retention/plugin.ts";
import { signingPlugin } from "./signing/plugin.ts";
import { telemetryPlugin } from "./telemetry/plugin.ts";
import { telemetryReadBarrierPlugin } from "./telemetry/read-barrier.ts";
import { invitationPlugin } from "./tenants/invitation-plugin.ts";
import { orgPlugin } from "./tenants/org-plugin.ts";
import { webhooksPlugin } from "./webhooks/plugin.ts";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The API's version in the OpenAPI document. */
const API_VERSION = "0.1.0";

export interface BuildAppOptions {
  db: Db;
  /** A pino logger to use, or true/false for Fastify's own logger at the configured level / none. */
  logger?: Logger | boolean;
  config: CloudConfig;
}

export async function buildApp({ db, logger = false, config }: BuildAppOptions): Promise<FastifyInstance> {
  const instance = logger === true ? createLogger({ service: "cloud", level: config.logLevel }) : logger;
  const logging = instance === false ? { logger: false } : { loggerInstance: instance as FastifyBaseLogger };
  const app = Fastify({
    ...logging,
    // A well-formed request id from the load balancer is kept (and answered in X-Request-Id); else a new one.
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    bodyLimit: 64 * 1024,
    // Unknown properties are refused rather than silently dropped, and nothing is coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    ...problemServerOptions,
    trustProxy: config.trustProxy,
  });
  await app.register(problemDetailsPlugin);
  await app.register(cloudMetricsPlugin, { db, token: config.opsToken });
  const tracker = ErrorTracker.create(config.sentryDsn, config.sentryEnvironment, API_VERSION);
  await app.register(observabilityPlugin, {
    tracker,
    opsToken: config.opsToken,
    dashboardSentry: config.sentryDsn ? { dsn: config.sentryDsn, environment: config.sentryEnvironment } : undefined,
  });
  app.addHook("onClose", async () => {
    await tracker?.close();
  });
  await app.register(securityHeadersPlugin);
  await app.register(rateLimitPlugin, config.rateLimits);
  await app.register(unusedConnectionsPlugin);
  await app.register(inputHygienePlugin);
  await app.register(openApiPlugin, { version: API_VERSION });
  await app.register(accessPlugin, { db, sessionTtlSeconds: config.sessionTtlSeconds });
  await app.register(authPlugin, { db, sessionTtlSeconds: config.sessionTtlSeconds });
  await app.register(orgPlugin, { db, sessionTtlSeconds: config.sessionTtlSeconds });
  await app.register(invitationPlugin, { db, sessionTtlSeconds: config.sessionTtlSeconds });
  await app.register(keysPlugin, { db });
  await app.register(healthPlugin, { db });
  await app.register(telemetryReadBarrierPlugin, { db });
  await app.register(devicesPlugin, { db });
  await app.register(telemetryPlugin, { db });
  await app.register(retentionPlugin, { db });
  const secrets = await SecretBox.open(config.secretsKey, config.dataDir);
  await app.register(exportsPlugin, {
    db,
    scheduler: config.exportScheduler,
    secrets,
    webhookAllowedNetworks: config.webhookAllowedNetworks,
    fileTtlDays: config.exportFileTtlDays,
    allowedLatenessMs: config.exportAllowedLatenessSeconds * 1000,
    maxWaitMs: config.exportMaxWaitSeconds * 1000,
  });
  await app.register(logsPlugin, { db });
  await app.register(gatewayApiPlugin, { db });
  await app.register(commandsPlugin, { db });
  await app.register(alertsPlugin, {
    db,
    metrics: app.metrics,
    engine: { sweepMs: config.alertSweepSeconds * 1000 },
  });
  await app.register(webhooksPlugin, {
    db,
    secrets,
    webhookAllowedNetworks: config.webhookAllowedNetworks,
    metrics: app.metrics,
    dispatcher: config.webhookDispatcher,
  });
  await app.register(signingPlugin, { db, secrets });
  await app.register(artifactsPlugin, { db, secrets, maxBytes: config.artifactMaxBytes });
  await app.register(otaPlugin, {
    db,
    secrets,
    artifactMaxBytes: config.artifactMaxBytes,
    tickMs: config.otaTickMs,
    offerLeaseMs: config.otaOfferLeaseMs,
  });
  await app.register(dashboardPlugin, { dir: config.dashboardDir, sentryDsn: config.sentryDsn });
  return app;
}
