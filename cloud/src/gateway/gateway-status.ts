// What each site gateway last reported about itself (uplink queue depth and age, clients), for
// the system alert rules on gateway queues: `POST /api/gateway/v1/status`, one document per
// gateway, `_id = <tenantId>|<gatewayId>`.

import type { FastifyInstance } from "fastify";
import type { Collection, Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { problemResponses } from "../http/problem.ts";

export interface GatewayStatus {
  gatewayId: string;
  queue: { depth: number; bytes: number; oldestAgeMs: number };
  clients: number;
}

export interface GatewayStatusDoc extends GatewayStatus {
  _id: string;
  tenantId: string;
  reportedAt: number;
}

export class GatewayStatusStore {
  private readonly statuses: Collection<GatewayStatusDoc>;

  constructor(db: Db) {
    this.statuses = db.collection<GatewayStatusDoc>("gateway_status");
  }

  async record(tenantId: string, status: GatewayStatus, at: number): Promise<void> {
    const _id = `${tenantId}|${status.gatewayId}`;
    await this.statuses.replaceOne({ _id }, { ...status, tenantId, reportedAt: at }, { upsert: true });
  }

  /** The tenant's gateways that reported since `since`. */
  recent(tenantId: string, since: number): Promise<GatewayStatusDoc[]> {
    return this.statuses.find({ tenantId, reportedAt: { $gte: since } }).toArray();
  }
}

const COUNT = { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;

export async function gatewayStatusPlugin(app: FastifyInstance, options: { db: Db }): Promise<void> {
  const store = new GatewayStatusStore(options.db);
  app.post<{ Body: GatewayStatus }>(
    "/api/gateway/v1/status",
    {
      config: { gateway: true },
      schema: {
        summary: "A site gateway reports its uplink queue and clients (for system alert rules)",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["gatewayId", "queue", "clients"],
          properties: {
            gatewayId: { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_.:-]+$" },
            queue: {
              type: "object",
              additionalProperties: false,
              required: ["depth", "bytes", "oldestAgeMs"],
              properties: { depth: COUNT, bytes: COUNT, oldestAgeMs: COUNT },
            },
            clients: COUNT,
          },
          examples: [{ gatewayId: "site-1", queue: { depth: 120, bytes: 48_000, oldestAgeMs: 2500 }, clients: 3 }],
        },
        response: { 204: { description: "Recorded.", type: "null" }, ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      await store.record(orgOf(request), request.body, Date.now());
      return reply.code(204).send();
    },
  );
}
