// Liveness and readiness for load balancers and the local runner: answers 200
// only while the database answers a ping.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { problemResponses, sendProblem } from "../http/problem.ts";

export interface HealthOptions {
  db: Db;
}

export async function healthPlugin(app: FastifyInstance, options: HealthOptions): Promise<void> {
  app.get(
    "/api/health",
    {
      config: { public: true },
      schema: {
        summary: "Whether the API and its database answer",
        response: {
          200: {
            description: "The API and its database answer.",
            type: "object",
            additionalProperties: false,
            required: ["status"],
            properties: { status: { type: "string", const: "ok" } },
          },
          ...problemResponses(503),
        },
      },
    },
    async (request, reply) => {
      try {
        await options.db.command({ ping: 1 });
        return { status: "ok" as const };
      } catch (error) {
        request.log.error({ err: error }, "database ping failed");
        return sendProblem(reply, 503, "database_unavailable", "the database does not answer");
      }
    },
  );
}
