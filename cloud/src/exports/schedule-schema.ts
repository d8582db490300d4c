// The scheduled exports API's shapes: JSON schemas and their TypeScript twins. No runtime
// imports but the import-free text-schema.ts, so the dashboard can import the types too.

import { countPattern, ONE_LINE_PATTERN } from "../http/text-schema.ts";

export type ExportDestination = { type: "webhook"; url: string } | { type: "download" };
export type RunStatus = "running" | "succeeded" | "failed";

export interface CreateScheduleBody {
  name: string;
  /** Five fields, UTC. */
  cron: string;
  devices: "all" | string[];
  metrics?: string[];
  /** Each run exports [tick - rangeSeconds, tick). */
  rangeSeconds: number;
  format: "csv" | "json" | "ndjson";
  destination: ExportDestination;
}

export interface ScheduleView extends Omit<CreateScheduleBody, "metrics"> {
  scheduleId: string;
  metrics: string[] | null;
  /** Epoch ms, like every time below. */
  createdAt: number;
  nextRunAt: number;
}

/** The answer to creating a schedule: the only time a webhook's signing secret is shown. */
export interface CreatedScheduleView extends ScheduleView {
  signingSecret?: string;
}

export interface RunView {
  runId: string;
  scheduleId: string;
  tick: number;
  /** 1, or more when earlier attempts of this tick were lost with their replica. */
  attempt: number;
  /** False when the run started because the maximum wait ran out, not because every gateway had caught up. */
  dataComplete: boolean;
  from: number;
  to: number;
  status: RunStatus;
  format: "csv" | "json" | "ndjson";
  destination: "webhook" | "download";
  startedAt: number;
  finishedAt: number | null;
  rows: number | null;
  bytes: number | null;
  error: string | null;
  /** Where a stored export is downloaded, once the run succeeded and until the file expires. */
  fileUrl: string | null;
  /** When a download run's file expires (then deleted; the download answers 410). */
  fileExpiresAt: number | null;
}

export interface RunListQuery {
  scheduleId?: string;
  /** 1..200, default 50. */
  limit?: string;
  cursor?: string;
}

export const MAX_SCHEDULE_DEVICES = 100;
export const MAX_RANGE_SECONDS = 31 * 86_400;

const ID = { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_-]+$" } as const;
const FORMAT = { type: "string", enum: ["csv", "json", "ndjson"] } as const;
const DEVICES = {
  description: "`all`, or up to 100 device ids",
  oneOf: [
    { type: "string", const: "all" },
    {
      type: "array",
      minItems: 1,
      maxItems: MAX_SCHEDULE_DEVICES,
      uniqueItems: true,
      items: { type: "string", minLength: 1, maxLength: 64 },
    },
  ],
} as const;
const METRICS = {
  type: "array",
  minItems: 1,
  maxItems: 32,
  uniqueItems: true,
  items: { type: "string", minLength: 1, maxLength: 32 },
} as const;
const DESTINATION = {
  description: "POST the file to an http(s) URL, or store it for download (GET /api/exports/runs/{runId}/file)",
  oneOf: [
    {
      type: "object",
      additionalProperties: false,
      required: ["type", "url"],
      properties: {
        type: { type: "string", const: "webhook" },
        url: { type: "string", minLength: 8, maxLength: 2048 },
      },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["type"],
      properties: { type: { type: "string", const: "download" } },
    },
  ],
} as const;

const bodyProperties = {
  name: { type: "string", minLength: 1, maxLength: 100, pattern: ONE_LINE_PATTERN },
  cron: { type: "string", minLength: 9, maxLength: 100, description: "Five fields, UTC, e.g. `0 * * * *`" },
  devices: DEVICES,
  metrics: METRICS,
  rangeSeconds: { type: "integer", minimum: 60, maximum: MAX_RANGE_SECONDS },
  format: FORMAT,
  destination: DESTINATION,
} as const;

export const createScheduleBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "cron", "devices", "rangeSeconds", "format", "destination"],
  properties: bodyProperties,
  examples: [
    {
      name: "Daily CSV",
      cron: "0 6 * * *",
      devices: "all",
      metrics: ["temperature"],
      rangeSeconds: 86_400,
      format: "csv",
      destination: { type: "download" },
    },
  ],
} as const;

export const scheduleViewSchema = {
  type: "object",
  additionalProperties: false,
  required: ["scheduleId", "createdAt", "nextRunAt", ...createScheduleBodySchema.required, "metrics"],
  properties: {
    ...bodyProperties,
    scheduleId: { type: "string" },
    metrics: { anyOf: [METRICS, { type: "null" }] },
    createdAt: { type: "integer" },
    nextRunAt: { type: "integer" },
  },
} as const;

export const createdScheduleSchema = {
  ...scheduleViewSchema,
  description:
    "The new schedule; for a webhook also `signingSecret`, shown only here, which signs every delivery (`Kestrel-Signature`).",
  properties: {
    ...scheduleViewSchema.properties,
    signingSecret: { type: "string", description: "HMAC-SHA256 key of the webhook signatures." },
  },
} as const;

export const scheduleListSchema = {
  description: "The organization's export schedules, oldest first.",
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: scheduleViewSchema } },
} as const;

export const scheduleIdParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["scheduleId"],
  properties: { scheduleId: ID },
  examples: [{ scheduleId: "5d2c0f6b8e1a4c3d9f7e6a1b" }],
} as const;

export const runIdParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["runId"],
  properties: { runId: ID },
  examples: [{ runId: "5d2c0f6b8e1a4c3d9f7e6a1b-1795946400000" }],
} as const;

const NULLABLE_INTEGER = { type: ["integer", "null"] } as const;

export const runViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "runId",
    "scheduleId",
    "tick",
    "attempt",
    "dataComplete",
    "from",
    "to",
    "status",
    "format",
    "destination",
    "startedAt",
    "finishedAt",
    "rows",
    "bytes",
    "error",
    "fileUrl",
    "fileExpiresAt",
  ],
  properties: {
    runId: { type: "string" },
    scheduleId: { type: "string" },
    tick: { type: "integer" },
    attempt: { type: "integer", minimum: 1 },
    dataComplete: { type: "boolean" },
    from: { type: "integer" },
    to: { type: "integer" },
    status: { type: "string", enum: ["running", "succeeded", "failed"] },
    format: FORMAT,
    destination: { type: "string", enum: ["webhook", "download"] },
    startedAt: { type: "integer" },
    finishedAt: NULLABLE_INTEGER,
    rows: NULLABLE_INTEGER,
    bytes: NULLABLE_INTEGER,
    error: { type: ["string", "null"] },
    fileUrl: { type: ["string", "null"] },
    fileExpiresAt: NULLABLE_INTEGER,
  },
} as const;

export const runListQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    scheduleId: ID,
    limit: { type: "string", pattern: countPattern(200), description: "1..200, default 50" },
    cursor: { type: "string", maxLength: 200 },
  },
  examples: [{ scheduleId: "5d2c0f6b8e1a4c3d9f7e6a1b", limit: "20" }],
} as const;

export const runListSchema = {
  description: "Runs, latest tick first; `cursor` asks for the next page.",
  type: "object",
  additionalProperties: false,
  required: ["items", "cursor"],
  properties: { items: { type: "array", items: runViewSchema }, cursor: { type: ["string", "null"] } },
} as const;

export const storedFileResponse = {
  description: "The stored export of a succeeded run, in its format, as an attachment.",
  content: {
    "text/csv": { schema: { type: "string" } },
    "application/json": { schema: { type: "array" } },
    "application/x-ndjson": { schema: { type: "string" } },
  },
} as const;
