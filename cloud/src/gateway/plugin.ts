// The API site gateways call, authenticated by a tenant's gateway key: device
// credential checks for the MQTT broker, batched, idempotent ingest, and the
// reports of how far each gateway's uplink has come.

import { LIMITS } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type IngestRequest, IngestService, MAX_ITEMS } from "./ingest.ts";
import { UplinkProgressStore, type UplinkReport } from "./uplink-progress.ts";

export interface GatewayApiOptions {
  db: Db;
}

// 500 batches of up to 100 samples are ~5 MiB of JSON in practice; the cap leaves room and bounds memory.
const INGEST_BODY_LIMIT = 16 * 1024 * 1024;
const DEVICE_ID = { type: "string", minLength: 1, maxLength: LIMITS.deviceIdLength } as const;
const EPOCH_MS = { type: "integer", minimum: 0, maximum: 8_640_000_000_000_000 } as const;

interface DeviceAuthBody {
  deviceId: string;
  token: string;
}

export async function gatewayApiPlugin(app: FastifyInstance, options: GatewayApiOptions): Promise<void> {
  const devices = new DeviceStore(options.db);
  const ingest = new IngestService(options.db, devices);
  const progress = new UplinkProgressStore(options.db);

  app.post<{ Body: { gatewayId: string; uplink: UplinkReport } }>(
    "/api/gateway/v1/uplink-status",
    {
      config: { gateway: true },
      schema: {
        summary:
          "Report the gateway's uplink queue: scheduled exports wait until it holds nothing older than their range",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["gatewayId", "uplink"],
          properties: {
            gatewayId: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
            uplink: {
              type: "object",
              additionalProperties: false,
              required: ["pending", "oldestAt", "at"],
              properties: {
                pending: { type: "integer", minimum: 0, maximum: 1_000_000_000 },
                oldestAt: { anyOf: [EPOCH_MS, { type: "null" }] },
                at: EPOCH_MS,
              },
            },
          },
          examples: [
            { gatewayId: "site-a", uplink: { pending: 120, oldestAt: 1_767_225_598_000, at: 1_767_225_600_000 } },
          ],
        },
        response: {
          204: { description: "Recorded.", type: "null" },
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      await progress.report(orgOf(request), request.body.gatewayId, request.body.uplink, new Date());
      return reply.code(204).send();
    },
  );

  app.post<{ Body: DeviceAuthBody }>(
    "/api/gateway/v1/device-auth",
    {
      config: { gateway: true },
      schema: {
        summary: "Check a device's MQTT credentials",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["deviceId", "token"],
          properties: { deviceId: DEVICE_ID, token: { type: "string", minLength: 1, maxLength: 256 } },
          examples: [{ deviceId: "sim-001", token: "q3Y8m1y2b0b5kZrXx0s7dJv4l9c6n8p2w1e5r7t9u3A" }],
        },
        response: {
          200: {
            description: "The device and its token are valid.",
            type: "object",
            additionalProperties: false,
            required: ["deviceId", "tenantId"],
            properties: { deviceId: { type: "string" }, tenantId: { type: "string" } },
          },
          ...problemResponses(400, 401),
        },
      },
    },
    async (request) => {
      const tenantId = orgOf(request);
      const { deviceId, token } = request.body;
      if (!(await devices.verifyToken(tenantId, deviceId, token))) {
        request.log.warn({ deviceId }, "device authentication failed");
        throw new Problem(401, "device_auth_failed", "unknown device or wrong token");
      }
      return { deviceId, tenantId };
    },
  );

  app.post<{ Body: IngestRequest }>(
    "/api/gateway/v1/ingest",
    {
      config: { gateway: true, wireChecked: true },
      bodyLimit: INGEST_BODY_LIMIT,
      schema: {
        summary: "Deliver devices' telemetry, states and logs (idempotent)",
        body: {
          type: "object",
          additionalProperties: false,
          properties: {
            telemetry: {
              type: "array",
              maxItems: MAX_ITEMS,
              items: {
                type: "object",
                additionalProperties: false,
                required: ["deviceId", "batch"],
                // The batch's own shape is checked per item by the wire contract's validator.
                properties: { deviceId: DEVICE_ID, batch: { type: "object" } },
              },
            },
            states: {
              type: "array",
              maxItems: MAX_ITEMS,
              items: {
                type: "object",
                additionalProperties: false,
                required: ["deviceId", "receivedAt", "state"],
                properties: {
                  deviceId: DEVICE_ID,
                  receivedAt: { type: "integer", minimum: 0, maximum: 8_640_000_000_000_000 },
                  state: { type: "object" },
                },
              },
            },
            logs: {
              type: "array",
              maxItems: MAX_ITEMS,
              items: {
                type: "object",
                additionalProperties: false,
                required: ["deviceId", "receivedAt", "batch"],
                // The batch's own shape is checked per item by the wire contract's validator.
                properties: {
                  deviceId: DEVICE_ID,
                  receivedAt: { type: "integer", minimum: 0, maximum: 8_640_000_000_000_000 },
                  batch: { type: "object" },
                },
              },
            },
          },
          examples: [
            {
              telemetry: [
                {
                  deviceId: "sim-001",
                  batch: { v: 1, boot: 1, samples: [{ seq: 1, ts: 1_767_225_600_000, m: { temperature: 21.5 } }] },
                },
              ],
              logs: [
                {
                  deviceId: "sim-001",
                  receivedAt: 1_767_225_600_200,
                  batch: {
                    v: 1,
                    records: [
                      {
                        boot: 1,
                        seq: 0,
                        ts: 1_767_225_600_100,
                        level: "info",
                        tag: "main",
                        msg: "boot",
                        reset: "power-on",
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
        response: {
          200: {
            description:
              "Telemetry samples taken (durable; samples stored before are found and counted when applied), and the items refused with the reason.",
            type: "object",
            additionalProperties: false,
            required: ["accepted", "rejected"],
            properties: {
              accepted: { type: "integer" },
              rejected: {
                type: "array",
                items: {
                  type: "object",
                  additionalProperties: false,
                  required: ["kind", "index", "deviceId", "code", "message"],
                  properties: {
                    kind: { type: "string", enum: ["telemetry", "state", "log"] },
                    index: { type: "integer" },
                    deviceId: { type: "string" },
                    code: { type: "string" },
                    message: { type: "string" },
                  },
                },
              },
            },
          },
          ...problemResponses(400, 401, 413),
        },
      },
    },
    async (request) => {
      const tenantId = orgOf(request);
      const result = await ingest.ingest(tenantId, request.body);
      app.metrics.ingestSamples.inc(result.accepted);
      for (const { kind, code } of result.rejected) app.metrics.ingestRejected.inc({ kind, code });
      request.log.debug({ tenantId, accepted: result.accepted }, "ingest");
      if (result.rejected.length > 0) {
        request.log.warn({ tenantId, rejected: result.rejected }, `ingest rejected ${result.rejected.length} items`);
      }
      return result;
    },
  );
}
