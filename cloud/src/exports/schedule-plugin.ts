// Scheduled exports of the caller's organization: schedules (cron, scope, destination), their
// runs with status, the stored files of download runs until they expire; and, when enabled, this
// replica's scheduler. Every replica runs the file expiry job (one per slot deletes).

import { isDeviceId, isMetricName } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { newSecret } from "../auth/secrets.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { WebhookEgress } from "../webhooks/egress.ts";
import { cronProblem, nextTick } from "./cron.ts";
import { ExportFileStore } from "./export-file-store.ts";
import { CONTENT_TYPES } from "./export-format.ts";
import { ExportFileExpiry, FILE_EXPIRY_SLOT_MS } from "./file-expiry.ts";
import { ExportRunStore, type RunDoc } from "./run-store.ts";
import {
  type CreatedScheduleView,
  type CreateScheduleBody,
  createdScheduleSchema,
  createScheduleBodySchemaFor,
  type RunListQuery,
  type RunView,
  runIdParamsSchema,
  runListQuerySchema,
  runListSchema,
  runViewSchema,
  type ScheduleView,
  scheduleIdParamsSchema,
  scheduleListSchema,
  storedFileResponse,
} from "./schedule-schema.ts";
import { ExportScheduleStore, MAX_SCHEDULES, type ScheduleDoc } from "./schedule-store.ts";
import { ExportScheduler } from "./scheduler.ts";
import { exportFileName, TelemetryExport } from "./telemetry-export.ts";

export interface SchedulesOptions {
  db: Db;
  scheduler: boolean;
  /** Seals the webhook signing secrets. */
  secrets: SecretBox;
  /** Internal networks webhooks may reach anyway (CIDR). */
  webhookAllowedNetworks: readonly string[];
  /** Days a stored file is kept. */
  fileTtlDays: number;
  allowedLatenessMs: number;
  maxWaitMs: number;
}

const DEFAULT_RUN_PAGE = 50;

function invalidSchedule(detail: string): Problem {
  return new Problem(400, "invalid_schedule", detail);
}

function scheduleNotFound(scheduleId: string): Problem {
  return new Problem(404, "schedule_not_found", `no export schedule ${scheduleId} in this organization`);
}

function runNotFound(runId: string): Problem {
  return new Problem(404, "run_not_found", `no export run ${runId} in this organization`);
}

function scheduleProblem(body: CreateScheduleBody, egress: WebhookEgress): string | undefined {
  const cron = cronProblem(body.cron);
  if (cron !== undefined) return cron;
  const device = body.devices === "all" ? undefined : body.devices.find((id) => !isDeviceId(id));
  if (device !== undefined) return `"${device}" is not a device id`;
  const metric = body.metrics?.find((name) => !isMetricName(name));
  if (metric !== undefined) return `"${metric}" is not a metric name`;
  return body.destination.type === "webhook" ? egress.urlProblem(body.destination.url, "destination.url") : undefined;
}

function toScheduleView(doc: ScheduleDoc, now: number): ScheduleView {
  return {
    scheduleId: doc._id,
    name: doc.name,
    cron: doc.cron,
    devices: doc.devices === "all" ? "all" : [...doc.devices],
    metrics: doc.metrics,
    rangeSeconds: doc.rangeSeconds,
    format: doc.format,
    destination: doc.destination,
    createdAt: doc.createdAt.getTime(),
    nextRunAt: nextTick(doc.cron, now),
  };
}

function fileExpired(doc: RunDoc, now: number): boolean {
  return doc.fileDeletedAt !== undefined || (doc.expiresAt !== undefined && doc.expiresAt.getTime() <= now);
}

function toRunView(doc: RunDoc, now: number): RunView {
  const stored = doc.destination === "download" && doc.status === "succeeded" && !fileExpired(doc, now);
  return {
    runId: doc._id,
    scheduleId: doc.scheduleId,
    tick: doc.tick.getTime(),
    // Runs recorded before retries existed have no attempt number.
    attempt: doc.attempt ?? 1,
    // Runs recorded before the allowed lateness existed did not wait for anything.
    dataComplete: doc.dataComplete ?? false,
    from: doc.from.getTime(),
    to: doc.to.getTime(),
    status: doc.status,
    format: doc.format,
    destination: doc.destination,
    startedAt: doc.startedAt.getTime(),
    finishedAt: doc.finishedAt?.getTime() ?? null,
    rows: doc.rows ?? null,
    bytes: doc.bytes ?? null,
    error: doc.error ?? null,
    fileUrl: stored ? `/api/exports/runs/${doc._id}/file` : null,
    fileExpiresAt: doc.expiresAt?.getTime() ?? null,
  };
}

export async function schedulesPlugin(app: FastifyInstance, options: SchedulesOptions): Promise<void> {
  const exporter = new TelemetryExport(options.db);
  const schedules = new ExportScheduleStore(options.db);
  const runs = new ExportRunStore(options.db);
  const files = new ExportFileStore(options.db);
  const egress = new WebhookEgress(options.webhookAllowedNetworks);

  if (options.scheduler) {
    const scheduler = new ExportScheduler(options.db, app.log.child({ component: "export-scheduler" }), {
      secrets: options.secrets,
      egress,
      fileTtlMs: options.fileTtlDays * 86_400_000,
      allowedLatenessMs: options.allowedLatenessMs,
      maxWaitMs: options.maxWaitMs,
    });
    app.addHook("onReady", async () => scheduler.start());
    app.addHook("onClose", () => scheduler.stop());
  }

  const expiry = new ExportFileExpiry(options.db, app.log);
  const expiryTimer = setInterval(() => {
    expiry.runOnce().catch((error: unknown) => app.log.error({ err: error }, "export file expiry failed"));
  }, FILE_EXPIRY_SLOT_MS);
  expiryTimer.unref();
  app.addHook("onClose", async () => clearInterval(expiryTimer));

  app.post<{ Body: CreateScheduleBody }>(
    "/api/exports/schedules",
    {
      config: { permission: "exports:write" },
      schema: {
        summary: "Schedule an export (cron, UTC) to a webhook or to stored files",
        body: createScheduleBodySchemaFor(options.webhookAllowedNetworks.length > 0),
        response: {
          201: createdScheduleSchema,
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply): Promise<CreatedScheduleView> => {
      const tenantId = orgOf(request);
      const body = request.body;
      const problem = scheduleProblem(body, egress);
      if (problem !== undefined) throw invalidSchedule(problem);
      await exporter.checkDevices(tenantId, body.devices);
      if ((await schedules.count(tenantId)) >= MAX_SCHEDULES) {
        throw new Problem(409, "too_many_schedules", `an organization has at most ${MAX_SCHEDULES} export schedules`);
      }
      const now = Date.now();
      const signingSecret = body.destination.type === "webhook" ? newSecret() : undefined;
      const doc = await schedules.create({
        tenantId,
        name: body.name.normalize("NFC").trim(),
        cron: body.cron.trim(),
        devices: body.devices,
        metrics: body.metrics ?? null,
        rangeSeconds: body.rangeSeconds,
        format: body.format,
        destination: body.destination,
        ...(signingSecret !== undefined && { secret: options.secrets.seal(signingSecret) }),
        createdAt: new Date(now),
      });
      reply.code(201);
      return { ...toScheduleView(doc, now), ...(signingSecret !== undefined && { signingSecret }) };
    },
  );

  app.get(
    "/api/exports/schedules",
    {
      config: { permission: "exports:read" },
      schema: {
        summary: "List the organization's export schedules",
        response: { 200: scheduleListSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      const now = Date.now();
      return { items: (await schedules.list(orgOf(request))).map((doc) => toScheduleView(doc, now)) };
    },
  );

  app.delete<{ Params: { scheduleId: string } }>(
    "/api/exports/schedules/:scheduleId",
    {
      config: { permission: "exports:write" },
      schema: {
        summary: "Delete an export schedule (its runs and stored files stay)",
        params: scheduleIdParamsSchema,
        response: { 204: { description: "Deleted.", type: "null" }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { scheduleId } = request.params;
      if (!(await schedules.remove(orgOf(request), scheduleId))) throw scheduleNotFound(scheduleId);
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: RunListQuery }>(
    "/api/exports/runs",
    {
      config: { permission: "exports:read" },
      schema: {
        summary: "List runs of scheduled exports with their status, latest first",
        querystring: runListQuerySchema,
        response: { 200: runListSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { scheduleId, cursor } = request.query;
      const limit = Number(request.query.limit ?? DEFAULT_RUN_PAGE);
      const page = await runs.list(orgOf(request), {
        limit,
        ...(scheduleId !== undefined && { scheduleId }),
        ...(cursor !== undefined && { cursor }),
      });
      const now = Date.now();
      return { items: page.runs.map((run) => toRunView(run, now)), cursor: page.cursor };
    },
  );

  app.get<{ Params: { runId: string } }>(
    "/api/exports/runs/:runId",
    {
      config: { permission: "exports:read" },
      schema: {
        summary: "One run of a scheduled export",
        params: runIdParamsSchema,
        response: {
          200: { ...runViewSchema, description: "The run and its status." },
          ...problemResponses(401, 403, 404),
        },
      },
    },
    async (request): Promise<RunView> => {
      const run = await runs.ofTenant(orgOf(request), request.params.runId);
      if (!run) throw runNotFound(request.params.runId);
      return toRunView(run, Date.now());
    },
  );

  app.get<{ Params: { runId: string } }>(
    "/api/exports/runs/:runId/file",
    {
      config: { permission: "exports:read" },
      schema: {
        summary: "Download the file a scheduled export stored, until it expires",
        params: runIdParamsSchema,
        response: { 200: storedFileResponse, ...problemResponses(401, 403, 404, 410) },
      },
    },
    async (request, reply) => {
      const { runId } = request.params;
      const run = await runs.ofTenant(orgOf(request), runId);
      if (!run) throw runNotFound(runId);
      if (run.destination === "download" && run.status === "succeeded" && fileExpired(run, Date.now())) {
        const at = (run.expiresAt ?? run.fileDeletedAt)?.toISOString();
        throw new Problem(410, "file_expired", `the file of run ${runId} expired at ${at} and was deleted`);
      }
      if (run.destination !== "download" || run.status !== "succeeded" || run.chunks === undefined) {
        throw new Problem(404, "file_not_found", `run ${runId} has no stored file (${run.status}, ${run.destination})`);
      }
      const scope = {
        devices: [],
        from: run.from.getTime(),
        to: run.to.getTime(),
        metrics: undefined,
        format: run.format,
      };
      return reply
        .type(CONTENT_TYPES[run.format])
        .header("content-disposition", `attachment; filename="${exportFileName(scope)}"`)
        .header("cache-control", "no-store")
        .send(files.read(runId, run.chunks));
    },
  );
}
