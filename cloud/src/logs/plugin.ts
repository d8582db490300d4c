// Device logs as operators read them: the records a device shipped on d/{id}/log, newest first,
// filtered by minimum level and device time, scoped to the caller's organization.

import type { LogLevel } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { countPattern } from "../http/text-schema.ts";
import { LogStore, type StoredLogRecord } from "./log-store.ts";

export interface LogsOptions {
  db: Db;
}

interface LogsQuerystring {
  level?: LogLevel;
  since?: string;
  limit?: string;
}

export interface LogList {
  items: StoredLogRecord[];
}

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

const logListSchema = {
  type: "object",
  description: "The device's log records that match, newest first.",
  additionalProperties: false,
  required: ["items"],
  properties: {
    items: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["boot", "seq", "ts", "level", "tag", "msg", "fields", "receivedAt"],
        properties: {
          boot: { type: "integer" },
          seq: { type: "integer" },
          ts: { type: "integer", description: "Device clock, epoch ms (1970 before the device's clock was set)." },
          level: { type: "string", enum: ["debug", "info", "warn", "error"] },
          tag: { type: "string", description: "The firmware module that logged the record." },
          msg: { type: "string" },
          fields: { type: "object", additionalProperties: { type: ["string", "number", "boolean"] } },
          receivedAt: { type: "integer", description: "When the gateway received the record, epoch ms." },
        },
      },
    },
  },
} as const;

export async function logsPlugin(app: FastifyInstance, options: LogsOptions): Promise<void> {
  const devices = new DeviceStore(options.db);
  const logs = new LogStore(options.db);
  app.get<{ Params: DeviceIdParams; Querystring: LogsQuerystring }>(
    "/api/devices/:deviceId/logs",
    {
      config: { permission: "devices:read" },
      schema: {
        summary: "A device's log records, newest first, filtered by minimum level and device time",
        params: deviceIdParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            level: { type: "string", enum: ["debug", "info", "warn", "error"], description: "Minimum level." },
            since: { type: "string", pattern: "^[0-9]{1,15}$", description: "Records with ts >= since (epoch ms)." },
            limit: {
              type: "string",
              pattern: countPattern(MAX_LIMIT),
              description: `1..${MAX_LIMIT}, ${DEFAULT_LIMIT} by default.`,
            },
          },
          examples: [{ level: "warn", limit: "100" }],
        },
        response: { 200: logListSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request): Promise<LogList> => {
      const tenantId = orgOf(request);
      const { deviceId } = request.params;
      // The schema refuses 0 and anything over MAX_LIMIT (400), as documented: nothing is clamped.
      const limit = Number(request.query.limit ?? DEFAULT_LIMIT);
      if (!(await devices.find(tenantId, deviceId))) throw deviceNotFound(deviceId);
      const items = await logs.query(tenantId, deviceId, {
        level: request.query.level ?? "debug",
        since: Number(request.query.since ?? 0),
        limit,
      });
      return { items };
    },
  );
}
