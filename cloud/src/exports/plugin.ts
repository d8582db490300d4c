// Telemetry exports of the caller's organization: one device or several, streamed as CSV, JSON
// or NDJSON with constant memory however long the range; and the scheduled exports' routes.

import type { FastifyInstance, FastifyReply } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { CONTENT_TYPES, type ExportTally } from "./export-format.ts";
import { type ExportQuery, type OrgExportQuery, parseDeviceScope, parseExportQuery } from "./export-query.ts";
import { deviceExportQuerySchema, exportResponse, orgExportQuerySchema } from "./export-schema.ts";
import { closeExportWorkers } from "./export-workers.ts";
import { schedulesPlugin } from "./schedule-plugin.ts";
import { type ExportScope, exportFileName, TelemetryExport } from "./telemetry-export.ts";

export interface ExportsOptions {
  db: Db;
  /** Run this replica's export scheduler (every replica may; each tick runs once). */
  scheduler: boolean;
  /** Seals the webhook signing secrets. */
  secrets: SecretBox;
  /** Internal networks webhooks may reach anyway (CIDR). */
  webhookAllowedNetworks: readonly string[];
  /** Days a stored file is kept. */
  fileTtlDays: number;
  /** How long after a tick samples may still arrive from devices (scheduler.ts, allowed lateness). */
  allowedLatenessMs: number;
  /** The longest a tick waits for the organization's gateways to deliver their backlog. */
  maxWaitMs: number;
}

export async function exportsPlugin(app: FastifyInstance, options: ExportsOptions): Promise<void> {
  const exporter = new TelemetryExport(options.db);
  app.addHook("onClose", () => closeExportWorkers(options.db));

  async function sendExport(reply: FastifyReply, tenantId: string, scope: ExportScope): Promise<FastifyReply> {
    await exporter.checkDevices(tenantId, scope.devices);
    const tally: ExportTally = { rows: 0, samples: 0, bytes: 0 };
    const body = exporter.stream(tenantId, scope, tally);
    body.on("end", () => reply.log.info({ tenantId, format: scope.format, ...tally }, "export sent"));
    return reply
      .type(CONTENT_TYPES[scope.format])
      .header("content-disposition", `attachment; filename="${exportFileName(scope)}"`)
      .header("cache-control", "no-store")
      .send(body);
  }

  app.get<{ Params: DeviceIdParams; Querystring: ExportQuery }>(
    "/api/devices/:deviceId/telemetry/export",
    {
      config: { permission: "exports:read" },
      schema: {
        summary: "Export one device's raw telemetry as CSV, JSON or NDJSON",
        params: deviceIdParams,
        querystring: deviceExportQuerySchema,
        response: { 200: exportResponse, ...problemResponses(400, 401, 403, 404) },
      },
    },
    (request, reply) =>
      sendExport(reply, orgOf(request), parseExportQuery(request.query, [request.params.deviceId], Date.now())),
  );

  app.get<{ Querystring: OrgExportQuery }>(
    "/api/telemetry/export",
    {
      config: { permission: "exports:read" },
      schema: {
        summary: "Export the raw telemetry of several devices, or all, as CSV, JSON or NDJSON",
        querystring: orgExportQuerySchema,
        response: { 200: exportResponse, ...problemResponses(400, 401, 403, 404) },
      },
    },
    (request, reply) =>
      sendExport(
        reply,
        orgOf(request),
        parseExportQuery(request.query, parseDeviceScope(request.query.devices), Date.now()),
      ),
  );

  await app.register(schedulesPlugin, options);
}
