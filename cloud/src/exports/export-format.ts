// Telemetry rows encoded as RFC 4180 CSV (long format), a JSON array or NDJSON, from an async
// source of hourly batches, in chunks of about CHUNK_CHARS: an export of any length holds one
// batch's chunks in memory.

import { selectMetrics } from "../telemetry/history.ts";
import type { HistorySample } from "../telemetry/history-schema.ts";

export const EXPORT_FORMATS = ["csv", "json", "ndjson"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const CONTENT_TYPES: Readonly<Record<ExportFormat, string>> = {
  csv: "text/csv; charset=utf-8",
  json: "application/json",
  ndjson: "application/x-ndjson",
};

/**
 * Stored samples of one device, in export order: an hourly bucket's worth. Consumed: the array is
 * emptied once encoded, so that no producer suspended upstream keeps its samples alive.
 */
export interface ExportBatch {
  deviceId: string;
  samples: HistorySample[];
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

function jsonRecord(deviceId: string, sample: HistorySample): string {
  return JSON.stringify({ deviceId, boot: sample.boot, seq: sample.seq, ts: sample.ts, m: sample.m });
}

/**
 * The encoded export, chunk by chunk. CSV numbers are JavaScript's shortest round-trip form and
 * times ISO 8601 UTC with milliseconds, so a parse gives back exactly the stored values.
 */
export async function* encodeExport(
  format: ExportFormat,
  batches: AsyncIterable<ExportBatch>,
  tally: ExportTally,
  /** Only these metrics; all when undefined. */
  metrics?: string[],
): AsyncGenerator<Buffer> {
  let chunk = format === "csv" ? CSV_HEADER.join(",") + CRLF : format === "json" ? "[" : "";
  for await (const { deviceId, samples } of batches) {
    // A batch is encoded whole, into bytes outside V8's heap, before its first chunk is handed on: what
    // waits for the socket is then only buffers, whose memory V8 bounds (it collects when they grow),
    // and the batch's samples and strings are garbage at once. Kept across the socket's waits, they
    // outlived young collections into the old generation, which grew by tens of MB a second until a
    // full collection: ~150 MB of RSS over idle in a 1,000,000-row export.
    const ready: Buffer[] = [];
    const device = csvField(deviceId);
    for (const stored of samples) {
      const sample = metrics ? selectMetrics([stored], metrics)[0] : stored;
      if (!sample) continue;
      tally.samples++;
      if (format === "csv") {
        const prefix = `${new Date(sample.ts).toISOString()},${device},${sample.boot},${sample.seq},`;
        for (const metric in sample.m) {
          chunk += `${prefix}${csvField(metric)},${sample.m[metric]}${CRLF}`;
          tally.rows++;
        }
      } else {
        const separator = format === "ndjson" ? "" : tally.rows === 0 ? "\n" : ",\n";
        chunk += separator + jsonRecord(deviceId, sample) + (format === "ndjson" ? "\n" : "");
        tally.rows++;
      }
      if (chunk.length >= CHUNK_CHARS) {
        const bytes = Buffer.from(chunk);
        tally.bytes += bytes.length;
        ready.push(bytes);
        chunk = "";
      }
    }
    samples.length = 0;
    yield* ready;
  }
  if (format === "json") chunk += "\n]\n";
  const last = Buffer.from(chunk);
  tally.bytes += last.length;
  if (last.length > 0) yield last;
}
