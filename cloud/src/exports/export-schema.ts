// The export API's shapes: JSON schemas of its queries and answers, with their TypeScript twins.
// No runtime imports but the import-free text-schema.ts, so the dashboard can import the types too.

import { deviceListPattern, INSTANT_PATTERN, METRIC_LIST_PATTERN } from "../http/text-schema.ts";

const QUERY_VALUE = { type: "string", pattern: INSTANT_PATTERN } as const;
/** Ids listed in `devices` (export-query.ts MAX_LISTED_DEVICES). */
const LISTED_DEVICES_MAX = 100;
const T_FROM = "2026-11-29T10:00:00Z";
const T_TO = "2026-11-29T11:00:00Z";

const exportQueryProperties = {
  format: { type: "string", enum: ["csv", "json", "ndjson"], description: "csv (default), json or ndjson" },
  from: { ...QUERY_VALUE, description: "Epoch ms or ISO 8601, inclusive; default: `to` minus one hour" },
  to: { ...QUERY_VALUE, description: "Epoch ms or ISO 8601, exclusive; default: now" },
  metrics: { type: "string", pattern: METRIC_LIST_PATTERN, description: "Comma-separated metric names; default: all" },
} as const;

export const deviceExportQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: exportQueryProperties,
  examples: [{ format: "csv", from: T_FROM, to: T_TO, metrics: "temperature,pressure" }],
} as const;

export const orgExportQuerySchema = {
  type: "object",
  additionalProperties: false,
  required: ["devices"],
  properties: {
    devices: {
      type: "string",
      pattern: `^(?:all|${deviceListPattern(LISTED_DEVICES_MAX).slice(1, -1)})$`,
      description: `\`all\`, or 1..${LISTED_DEVICES_MAX} comma-separated device ids`,
    },
    ...exportQueryProperties,
  },
  examples: [{ devices: "all", format: "ndjson", from: T_FROM, to: T_TO }],
} as const;

const exportRecordSchema = {
  type: "object",
  required: ["deviceId", "boot", "seq", "ts", "m"],
  properties: {
    deviceId: { type: "string" },
    boot: { type: "integer" },
    seq: { type: "integer" },
    ts: { type: "integer", description: "Epoch ms" },
    m: { type: "object", additionalProperties: { type: "number" } },
  },
} as const;

/** The 200 answer of an export: a file in the requested format, streamed. */
export const exportResponse = {
  description:
    "The samples as an attachment, devices one after the other, each in time order. CSV (RFC 4180, CRLF): " +
    "header `ts,deviceId,boot,seq,metric,value`, one line per metric value, `ts` ISO 8601 UTC. JSON: an array " +
    "of samples. NDJSON: one sample per line.",
  content: {
    "text/csv": { schema: { type: "string" } },
    "application/json": { schema: { type: "array", items: exportRecordSchema } },
    "application/x-ndjson": { schema: { type: "string" } },
  },
} as const;
