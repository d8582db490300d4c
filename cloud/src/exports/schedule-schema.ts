// The scheduled exports API's shapes: JSON schemas and their TypeScript twins. No runtime
// imports but the import-free text-schema.ts, so the dashboard can import the types too.

import { CURSOR_PATTERN, countPattern, ONE_LINE_PATTERN, portPattern } from "../http/text-schema.ts";

/** One cron field: a star with an optional step, values, ranges and ranges with steps, as a comma list. */
function cronField(value: string): string {
  const item = `(?:\\*(?:/[1-9][0-9]?)?|${value}(?:-${value}(?:/[1-9][0-9]?)?)?)`;
  return `${item}(?:,${item})*`;
}
const CRON_FIELDS = [
  "(?:[0-9]|[1-5][0-9])",
  "(?:[0-9]|1[0-9]|2[0-3])",
  "(?:[1-9]|[12][0-9]|3[01])",
  "(?:[1-9]|1[0-2])",
  "[0-7]",
].map(cronField);
const CRON_PATTERN = `^${CRON_FIELDS.join(" ")}$`;
/**
 * A public host name (two labels at least, letters in the last, so no address literal, and not
 * under `localhost`), an optional port, path and query.
 */
const HOST_NAME = "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+(?!localhost(?:[.:/]|$))[A-Za-z]{2,63}\\.?";
/** An IPv4 literal or a bracketed IPv6 one: only where the deployment lets webhooks into some internal networks. */
const ADDRESS_LITERAL =
  "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\\[[0-9A-Fa-f:.]{2,45}\\]";

/**
 * A webhook URL as the schema admits it: host names only, unless the deployment allows internal
 * networks (WEBHOOK_ALLOWED_NETWORKS), when address literals are admitted too and checked against them.
 */
export function webhookUrlPattern(addressLiterals: boolean): string {
  const host = addressLiterals ? `(?:${HOST_NAME}|${ADDRESS_LITERAL}|localhost)` : HOST_NAME;
  return `^https?://${host}(?::${portPattern()})?(?:[/?#][!-~]*)?$`;
}

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
      items: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$" },
    },
  ],
} as const;
const METRICS = {
  type: "array",
  minItems: 1,
  maxItems: 32,
  uniqueItems: true,
  items: { type: "string", pattern: "^[a-z][a-z0-9_]{0,31}$" },
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
        url: {
          type: "string",
          maxLength: 2048,
          pattern: webhookUrlPattern(false),
          description:
            "http(s) to a host name (not localhost), no user info; address literals only where the deployment allows " +
            "internal networks (WEBHOOK_ALLOWED_NETWORKS), and then only into those.",
        },
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
  cron: {
    type: "string",
    pattern: CRON_PATTERN,
    description:
      "Five fields, UTC, e.g. `0 * * * *`: minute hour day-of-month month day-of-week, each `*`, `*/step`, a value, " +
      "a range `a-b` (a ≤ b) or `a-b/step`, or a list of those without repeated values; the day must exist in a month named.",
  },
  devices: DEVICES,
  metrics: METRICS,
  rangeSeconds: { type: "integer", minimum: 60, maximum: MAX_RANGE_SECONDS },
  format: FORMAT,
  destination: DESTINATION,
} as const;

/** The create body for a deployment that does (not) let webhooks into internal networks. */
export function createScheduleBodySchemaFor(addressLiterals: boolean) {
  if (!addressLiterals) return createScheduleBodySchema;
  const [webhook, download] = DESTINATION.oneOf;
  const url = { ...webhook.properties.url, pattern: webhookUrlPattern(true) };
  const destination = { ...DESTINATION, oneOf: [{ ...webhook, properties: { ...webhook.properties, url } }, download] };
  return { ...createScheduleBodySchema, properties: { ...bodyProperties, destination } };
}

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
    // As stored: the input rules (host names only, …) are for new schedules, not for answers.
    destination: {
      ...DESTINATION,
      oneOf: [
        { ...DESTINATION.oneOf[0], properties: { ...DESTINATION.oneOf[0].properties, url: { type: "string" } } },
        DESTINATION.oneOf[1],
      ],
    },
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
    cursor: { type: "string", pattern: CURSOR_PATTERN, description: "The `cursor` of the page before." },
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
