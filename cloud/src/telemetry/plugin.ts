// Telemetry history of one device for charts and partners: raw samples or
// downsampled series over a time window, scoped to the caller's tenant.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import {
  autoResolution,
  downsample,
  type HistoryQuery,
  parseHistoryQuery,
  RAW_MAX_SAMPLES,
  selectMetrics,
} from "./history.ts";
import { type HistoryAnswer, historySchema } from "./history-schema.ts";
import { TelemetryStore } from "./telemetry-store.ts";

export interface TelemetryOptions {
  db: Db;
}

const QUERY_VALUE = { type: "string", maxLength: 64 } as const;

export async function telemetryPlugin(app: FastifyInstance, options: TelemetryOptions): Promise<void> {
  const devices = new DeviceStore(options.db);
  const telemetry = new TelemetryStore(options.db);
  app.get<{ Params: DeviceIdParams; Querystring: HistoryQuery }>(
    "/api/devices/:deviceId/telemetry",
    {
      config: { permission: "telemetry:read" },
      schema: {
        params: deviceIdParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            from: QUERY_VALUE,
            to: QUERY_VALUE,
            metrics: { type: "string", maxLength: 1100 },
            resolution: QUERY_VALUE,
          },
        },
        response: { 200: historySchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request): Promise<HistoryAnswer> => {
      const tenantId = orgOf(request);
      const { deviceId } = request.params;
      const window = parseHistoryQuery(request.query, Date.now());
      if (!(await devices.find(tenantId, deviceId))) throw deviceNotFound(deviceId);
      const { from, to } = window;
      const samples = selectMetrics(await telemetry.read(tenantId, deviceId, from, to), window.metrics);
      const resolution = window.resolution === "auto" ? autoResolution(from, to, samples.length) : window.resolution;
      if (resolution !== "raw") return { deviceId, from, to, resolution, series: downsample(samples, resolution) };
      if (samples.length > RAW_MAX_SAMPLES) {
        throw new Problem(
          400,
          "too_many_samples",
          `${samples.length} samples in this range (raw answers hold at most ${RAW_MAX_SAMPLES}); ask for a resolution`,
        );
      }
      return { deviceId, from, to, resolution, samples };
    },
  );
}
