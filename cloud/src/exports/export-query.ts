// Turns an export request's query into an export scope. The time window and metrics follow the
// history API's rules (parseHistoryQuery): epoch ms or ISO 8601, from < to, at most 31 days.

import { isDeviceId } from "@kestrel/wire";
import { Problem } from "../http/problem.ts";
import { parseHistoryQuery } from "../telemetry/history.ts";
import { EXPORT_FORMATS, type ExportFormat } from "./export-format.ts";
import type { DeviceScope, ExportScope } from "./telemetry-export.ts";

/** Devices one organization-wide export may list by id (`all` has no limit). */
export const MAX_LISTED_DEVICES = 100;

export interface ExportQuery {
  format?: string;
  from?: string;
  to?: string;
  metrics?: string;
}

export interface OrgExportQuery extends ExportQuery {
  devices: string;
}

function invalid(detail: string): Problem {
  return new Problem(400, "invalid_query", detail);
}

export function parseFormat(raw: string | undefined): ExportFormat {
  if (raw === undefined || raw === "") return "csv";
  const format = EXPORT_FORMATS.find((name) => name === raw);
  if (!format) throw invalid(`format must be one of ${EXPORT_FORMATS.join(", ")}`);
  return format;
}

/** `all`, or a comma-separated list of device ids. */
export function parseDeviceScope(raw: string): DeviceScope {
  if (raw === "all") return "all";
  const ids = [...new Set(raw.split(","))];
  if (ids.length > MAX_LISTED_DEVICES) throw invalid(`at most ${MAX_LISTED_DEVICES} devices, or all`);
  for (const id of ids) if (!isDeviceId(id)) throw invalid(`"${id}" is not a device id`);
  return ids;
}

export function parseExportQuery(query: ExportQuery, devices: DeviceScope, now: number): ExportScope {
  const { from, to, metrics } = parseHistoryQuery({ from: query.from, to: query.to, metrics: query.metrics }, now);
  return { devices, from, to, metrics, format: parseFormat(query.format) };
}
