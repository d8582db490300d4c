// Telemetry history of one device for charts and partners: raw samples or
// downsampled series over a time window, scoped to the caller's tenant.

import { isDeviceId } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import {
  countPattern,
  deviceListPattern,
  INSTANT_PATTERN,
  METRIC_LIST_PATTERN,
  resolutionPattern,
} from "../http/text-schema.ts";
import {
  autoResolution,
  COUNT_WITH_MINUTES_MS,
  downsample,
  type HistoryQuery,
  MAX_BUCKETS,
  MAX_RESOLUTION_S,
  parseHistoryQuery,
  RAW_MAX_SAMPLES,
  rollupLevelFor,
  sampleCount,
  selectMetrics,
} from "./history.ts";
import { type HistoryAnswer, historySchema } from "./history-schema.ts";
import { type Buckets, seriesFromBuckets } from "./rollups.ts";
import { type LatestValues, LEVEL_MS, type RollupLevel, TelemetryStore } from "./telemetry-store.ts";

export interface TelemetryOptions {
  db: Db;
  applyIntervalMs?: number;
}

const APPLY_INTERVAL_MS = 250;
/** How long closing waits for the pass in hand. */
const APPLY_STOP_DEADLINE_MS = 3_000;

const INSTANT = { type: "string", pattern: INSTANT_PATTERN } as const;
/** Devices one latest-values answer covers at most. */
export const LATEST_DEVICES_MAX = 1000;
/** Ids listed in `deviceIds`: a longer list would not fit the URL (Node's 16 KiB of headers). */
export const LATEST_LISTED_MAX = 100;

interface LatestQuery {
  deviceIds?: string;
  limit?: string;
}

export async function telemetryPlugin(app: FastifyInstance, options: TelemetryOptions): Promise<void> {
  const devices = new DeviceStore(options.db);
  const telemetry = new TelemetryStore(options.db);
  // Journalled telemetry becomes history, rollups and latest values here, soon after ingest.
  telemetry.startPasses();
  const applier = setInterval(() => {
    telemetry
      .applyBetweenBursts()
      .catch((error: unknown) => app.log.error({ err: error }, "applying the telemetry journal failed"));
  }, options.applyIntervalMs ?? APPLY_INTERVAL_MS);
  applier.unref();
  // What is journalled is durable: closing ends the pass in hand (bounded) and leaves the rest to the next one.
  app.addHook("onClose", async () => {
    clearInterval(applier);
    await telemetry.stopPasses(APPLY_STOP_DEADLINE_MS);
  });
  app.get<{ Params: DeviceIdParams; Querystring: HistoryQuery }>(
    "/api/devices/:deviceId/telemetry",
    {
      config: { permission: "telemetry:read" },
      schema: {
        summary: "A device's telemetry history, raw or downsampled",
        params: deviceIdParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            from: { ...INSTANT, description: "Epoch ms or ISO 8601, inclusive; default: `to` minus one hour." },
            to: {
              ...INSTANT,
              description: "Epoch ms or ISO 8601, exclusive; default: now. At most 31 days after `from`.",
            },
            metrics: { type: "string", pattern: METRIC_LIST_PATTERN, description: "Comma-separated metric names." },
            resolution: {
              type: "string",
              pattern: resolutionPattern(MAX_RESOLUTION_S),
              description: `raw, auto (default), 1m, 1h, 1d or seconds 1..${MAX_RESOLUTION_S}; at most ${MAX_BUCKETS} buckets.`,
            },
          },
          examples: [
            { from: "2026-11-01T00:00:00Z", to: "2026-11-02T00:00:00Z", metrics: "temperature", resolution: "1h" },
          ],
        },
        response: {
          200: {
            ...historySchema,
            description: "Raw samples, or per-metric avg/min/max/count buckets (from rollups when the width allows).",
          },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request): Promise<HistoryAnswer> => {
      const tenantId = orgOf(request);
      const { deviceId } = request.params;
      const window = parseHistoryQuery(request.query, Date.now());
      if (!(await devices.find(tenantId, deviceId))) throw deviceNotFound(deviceId);
      const { from, to, metrics } = window;
      let resolution = window.resolution;
      // Rollups read to choose the resolution, kept in case the answer comes from the same level.
      let counted: { level: RollupLevel; buckets: Buckets } | undefined;
      if (resolution === "auto") {
        // Counted in rollups, so choosing costs a handful of point reads, not a raw scan.
        const level = to - from <= COUNT_WITH_MINUTES_MS ? "1m" : "1h";
        const buckets = await telemetry.readRollups(tenantId, deviceId, level, from, to);
        resolution = autoResolution(from, to, sampleCount(buckets, from, to, LEVEL_MS[level]));
        counted = { level, buckets };
      }
      if (resolution !== "raw") {
        const level = rollupLevelFor(resolution);
        if (level) {
          const buckets =
            counted?.level === level
              ? counted.buckets
              : await telemetry.readRollups(tenantId, deviceId, level, from, to);
          return {
            deviceId,
            from,
            to,
            resolution,
            series: seriesFromBuckets(buckets, resolution * 1000, from, to, metrics),
          };
        }
        const samples = selectMetrics(await telemetry.read(tenantId, deviceId, from, to), metrics);
        return { deviceId, from, to, resolution, series: downsample(samples, resolution) };
      }
      const samples = selectMetrics(await telemetry.read(tenantId, deviceId, from, to), metrics);
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
  app.get<{ Querystring: LatestQuery }>(
    "/api/telemetry/latest",
    {
      config: { permission: "telemetry:read" },
      schema: {
        summary: "The latest value of every metric, per device",
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            deviceIds: {
              type: "string",
              pattern: deviceListPattern(LATEST_LISTED_MAX),
              description: `1..${LATEST_LISTED_MAX} comma-separated device ids.`,
            },
            limit: {
              type: "string",
              pattern: countPattern(LATEST_DEVICES_MAX),
              description: `1..${LATEST_DEVICES_MAX}.`,
            },
          },
          examples: [{ deviceIds: "sim-001,sim-002" }, { limit: "100" }],
        },
        response: {
          200: {
            description: "The latest value and time of every metric, per device with telemetry, ordered by device id.",
            type: "object",
            additionalProperties: false,
            required: ["items"],
            properties: {
              items: {
                type: "array",
                items: {
                  type: "object",
                  additionalProperties: false,
                  required: ["deviceId", "metrics", "samples"],
                  properties: {
                    deviceId: { type: "string" },
                    samples: {
                      description:
                        "Distinct samples stored for the device, and samples received again after they were stored (dropped).",
                      type: "object",
                      additionalProperties: false,
                      required: ["stored", "duplicates"],
                      properties: { stored: { type: "integer" }, duplicates: { type: "integer" } },
                    },
                    metrics: {
                      type: "object",
                      additionalProperties: {
                        type: "object",
                        additionalProperties: false,
                        required: ["value", "ts"],
                        properties: { value: { type: "number" }, ts: { type: "integer" } },
                      },
                    },
                  },
                },
              },
            },
          },
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request): Promise<{ items: LatestValues[] }> => {
      const tenantId = orgOf(request);
      const { deviceIds, limit } = request.query;
      const ids = deviceIds ? [...new Set(deviceIds.split(","))] : undefined;
      if (ids && (ids.length > LATEST_LISTED_MAX || !ids.every(isDeviceId))) {
        throw new Problem(400, "invalid_query", `deviceIds must list 1..${LATEST_LISTED_MAX} device ids`);
      }
      const max = Math.min(Number(limit ?? LATEST_DEVICES_MAX), LATEST_DEVICES_MAX);
      return { items: await telemetry.readLatest(tenantId, ids, max) };
    },
  );
}
