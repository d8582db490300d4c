// Liveness and readiness for load balancers, monitors and the local runner:
// 200 while the database answers a ping, else 503, and either answer within
// HEALTH_DEADLINE_MS whatever the database is doing (stopped, wedged, busy):
// the ping runs on a connection of its own with that deadline.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { problemResponses, sendProblem } from "../http/problem.ts";
import { probeFor } from "../storage/availability.ts";

export interface HealthOptions {
  db: Db;
}

/** The longest a health or readiness answer takes. */
export const HEALTH_DEADLINE_MS = 1_000;
/** What a 503 tells clients to wait before asking again. */
const RETRY_AFTER_S = "2";

const okSchema = (status: string, description: string) => ({
  description,
  type: "object",
  additionalProperties: false,
  required: ["status"],
  properties: { status: { type: "string", const: status } },
});

export async function healthPlugin(app: FastifyInstance, options: HealthOptions): Promise<void> {
  const probe = probeFor(options.db);
  const unavailable = (reply: Parameters<typeof sendProblem>[0]) =>
    sendProblem(
      reply.header("retry-after", RETRY_AFTER_S),
      503,
      "database_unavailable",
      `the database did not answer within ${HEALTH_DEADLINE_MS} ms`,
    );

  app.get(
    "/api/health",
    {
      config: { public: true },
      schema: {
        summary: "Whether the API and its database answer",
        response: { 200: okSchema("ok", "The API and its database answer."), ...problemResponses(503) },
      },
    },
    async (request, reply) => {
      if (await probe.ping(HEALTH_DEADLINE_MS)) return { status: "ok" as const };
      request.log.warn("health: the database did not answer a ping in time");
      return unavailable(reply);
    },
  );

  // Outside /api: for orchestrators (a Kubernetes readinessProbe), never behind authentication.
  app.get(
    "/readyz",
    {
      schema: {
        summary: "Whether this replica can serve: its database answers",
        response: {
          200: okSchema("ready", "This replica can serve: its database answers."),
          ...problemResponses(503),
        },
      },
    },
    async (_request, reply) =>
      (await probe.ping(HEALTH_DEADLINE_MS)) ? { status: "ready" as const } : unavailable(reply),
  );
}
