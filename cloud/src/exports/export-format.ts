// Telemetry rows encoded as RFC 4180 CSV (long format), a JSON array or NDJSON, from an async
// source, in chunks of about CHUNK_CHARS: an export of any length holds one chunk in memory.

import type { HistorySample } from "../telemetry/history-schema.ts";

export const EXPORT_FORMATS = ["csv", "json", "ndjson"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const CONTENT_TYPES: Readonly<Record<ExportFormat, string>> = {
  csv: "text/csv; charset=utf-8",
  json: "application/json",
  ndjson: "application/x-ndjson",
};

/** One stored sample of one device, as exported. */
export interface ExportRecord {
  deviceId: string;
  sample: HistorySample;
}

/** What an export wrote, for the run record and the benchmark. */
export interface ExportTally {
  /** CSV: data lines (one per metric value); JSON and NDJSON: samples. */
  rows: number;
  samples: number;
  bytes: number;
}

export const CSV_HEADER = ["ts", "deviceId", "boot", "seq", "metric", "value"] as const;

// Large enough that per-chunk overhead (a socket write, a stream hop) is negligible, small enough
// to be a constant next to the process.
const CHUNK_CHARS = 64 * 1024;
const CRLF = "\r\n";
const NEEDS_QUOTES = /[",\r\n]/;

/** One RFC 4180 field: quoted, with quotes doubled, only when it holds a comma, quote or line break. */
export function csvField(text: string): string {
  return NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function csvLines(record: ExportRecord): string[] {
  const { deviceId, sample } = record;
  const prefix = `${new Date(sample.ts).toISOString()},${csvField(deviceId)},${sample.boot},${sample.seq},`;
  return Object.entries(sample.m).map(([metric, value]) => `${prefix}${csvField(metric)},${value}${CRLF}`);
}

function jsonRecord(record: ExportRecord): string {
  const { deviceId, sample } = record;
  return JSON.stringify({ deviceId, boot: sample.boot, seq: sample.seq, ts: sample.ts, m: sample.m });
}

/**
 * The encoded export, chunk by chunk. CSV numbers are JavaScript's shortest round-trip form and
 * times ISO 8601 UTC with milliseconds, so a parse gives back exactly the stored values.
 */
export async function* encodeExport(
  format: ExportFormat,
  records: AsyncIterable<ExportRecord>,
  tally: ExportTally,
): AsyncGenerator<string> {
  let chunk = format === "csv" ? CSV_HEADER.join(",") + CRLF : format === "json" ? "[" : "";
  for await (const record of records) {
    tally.samples++;
    if (format === "csv") {
      const lines = csvLines(record);
      tally.rows += lines.length;
      for (const line of lines) chunk += line;
    } else {
      const separator = format === "ndjson" ? "" : tally.rows === 0 ? "\n" : ",\n";
      chunk += separator + jsonRecord(record) + (format === "ndjson" ? "\n" : "");
      tally.rows++;
    }
    if (chunk.length >= CHUNK_CHARS) {
      tally.bytes += Buffer.byteLength(chunk);
      yield chunk;
      chunk = "";
    }
  }
  if (format === "json") chunk += "\n]\n";
  tally.bytes += Buffer.byteLength(chunk);
  if (chunk.length > 0) yield chunk;
}
