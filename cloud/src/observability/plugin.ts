// Request context for logs and error reports: every request's id (an incoming X-Request-Id is
// kept, and returned), and once known its organization and device on its logger; 5xx answers
// reported to Sentry with those tags; the log level changed at run time (PUT /ops/log-level with
// the operations token); and the dashboard's error-tracking settings.

import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { bearerToken } from "../http/bearer.ts";
import { sendProblem } from "../http/problem.ts";
import type { ErrorTracker } from "./error-tracking.ts";

declare module "fastify" {
  interface FastifyInstance {
    /** Reports errors to Sentry; undefined without SENTRY_DSN. */
    errorTracker: ErrorTracker | undefined;
  }
}

export interface ObservabilityOptions {
  tracker: ErrorTracker | undefined;
  opsToken: string | undefined;
  /** What the dashboard's browser SDK reports to (the same DSN), or nothing. */
  dashboardSentry: { dsn: string; environment: string } | undefined;
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** The organization and device a request is about, as far as it is known. */
function contextOf(request: FastifyRequest): { tenantId?: string; deviceId?: string } {
  const deviceId = (request.params as { deviceId?: unknown } | undefined)?.deviceId;
  return {
    ...(request.principal && { tenantId: request.principal.tenantId }),
    ...(typeof deviceId === "string" && { deviceId }),
  };
}

async function observability(app: FastifyInstance, options: ObservabilityOptions): Promise<void> {
  app.decorate("errorTracker", options.tracker);

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
  // After authentication: from here on every line the request logs names its organization and device.
  app.addHook("preHandler", async (request) => {
    const context = contextOf(request);
    if (context.tenantId || context.deviceId) request.log = request.log.child(context);
  });
  // onError runs before the error handler decides the status; the report waits for the answer.
  const failures = new WeakMap<FastifyRequest, Error>();
  app.addHook("onError", async (request, _reply, error) => {
    failures.set(request, error);
  });
  app.addHook("onResponse", async (request, reply) => {
    const error = failures.get(request);
    if (!error || reply.statusCode < 500 || !options.tracker) return;
    options.tracker.capture(error, {
      requestId: request.id,
      ...contextOf(request),
      method: request.method,
      route: request.routeOptions.url ?? "unmatched",
      statusCode: reply.statusCode,
    });
  });

  const authorized = (request: FastifyRequest): boolean => {
    const given = Buffer.from(bearerToken(request) ?? "");
    const expected = Buffer.from(options.opsToken ?? "");
    return options.opsToken !== undefined && given.length === expected.length && timingSafeEqual(given, expected);
  };

  app.get("/ops/log-level", { schema: { hide: true } }, async (request, reply) => {
    if (!authorized(request)) return sendProblem(reply, 401, "unauthenticated", "the operations token is required");
    return { level: app.log.level };
  });

  app.put<{ Body: { level: string } }>(
    "/ops/log-level",
    {
      schema: {
        hide: true,
        body: {
          type: "object",
          additionalProperties: false,
          required: ["level"],
          properties: { level: { type: "string", enum: LOG_LEVELS } },
        },
      },
    },
    async (request, reply) => {
      if (!authorized(request)) return sendProblem(reply, 401, "unauthenticated", "the operations token is required");
      const from = app.log.level;
      app.log.level = request.body.level;
      app.log.warn({ from, to: request.body.level }, "log level changed");
      return { level: app.log.level };
    },
  );

  // Public by design: a browser SDK's DSN is meant to be seen (it can only send events).
  app.get("/dashboard-config.json", { schema: { hide: true } }, async () => ({
    sentry: options.dashboardSentry ?? null,
  }));
}

export const observabilityPlugin = fp(observability, { name: "observability" });
