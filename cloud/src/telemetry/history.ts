// Turns a history query into a time window and a resolution, and picks where
// the answer comes from: raw samples, or per-metric buckets merged from the
// stored rollups (1m, 1h, 1d) when the width is a multiple of one, else
// computed from raw samples at query time.

import { isMetricName, LIMITS } from "@kestrel/wire";
import { Problem } from "../http/problem.ts";
import type { Aggregate, HistorySample } from "./history-schema.ts";
import type { Buckets } from "./rollups.ts";
import type { RollupLevel } from "./telemetry-store.ts";

export const DEFAULT_RANGE_MS = 3_600_000;
export const MAX_RANGE_MS = 31 * 86_400_000;
/** `auto` answers raw up to this many samples. */
export const AUTO_RAW_MAX_SAMPLES = 3000;
/** `auto` picks the smallest width that keeps a series under this many points. */
export const AUTO_MAX_POINTS = 1000;
/** A raw answer larger than this is refused: ask for a resolution instead. */
export const RAW_MAX_SAMPLES = 20_000;
export const MAX_BUCKETS = 10_000;
export const MAX_RESOLUTION_S = 86_400;
const AUTO_WIDTHS_S = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400];

export type Resolution = "raw" | "auto" | number;

export interface HistoryQuery {
  from?: string;
  to?: string;
  metrics?: string;
  resolution?: string;
}

export interface HistoryWindow {
  from: number;
  to: number;
  metrics: string[] | undefined;
  resolution: Resolution;
}

function invalid(detail: string): Problem {
  return new Problem(400, "invalid_query", detail);
}

/** Epoch milliseconds or an ISO 8601 date-time. */
function parseTime(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const value = /^\d+$/.test(raw) ? Number(raw) : /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw invalid(`${name} must be epoch milliseconds or an ISO 8601 date-time`);
  return value;
}

const NAMED_WIDTHS_S: Record<string, number> = { "1m": 60, "1h": 3600, "1d": 86_400 };

function parseResolution(raw: string | undefined): Resolution {
  if (raw === undefined || raw === "" || raw === "auto") return "auto";
  if (raw === "raw") return "raw";
  const named = NAMED_WIDTHS_S[raw];
  if (named !== undefined) return named;
  const seconds = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_RESOLUTION_S) {
    throw invalid(`resolution must be raw, auto, 1m, 1h, 1d or a bucket width in seconds (1..${MAX_RESOLUTION_S})`);
  }
  return seconds;
}

function parseMetrics(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw === "") return undefined;
  const names = [...new Set(raw.split(","))];
  if (names.length > LIMITS.metricsPerSample) throw invalid(`at most ${LIMITS.metricsPerSample} metrics`);
  for (const name of names) if (!isMetricName(name)) throw invalid(`"${name}" is not a metric name`);
  return names;
}

export function parseHistoryQuery(query: HistoryQuery, now: number): HistoryWindow {
  const to = parseTime("to", query.to, now);
  const from = parseTime("from", query.from, to - DEFAULT_RANGE_MS);
  if (from >= to) throw invalid("from must be before to");
  if (to - from > MAX_RANGE_MS) throw invalid(`the range may span at most ${MAX_RANGE_MS / 86_400_000} days`);
  const resolution = parseResolution(query.resolution);
  if (typeof resolution === "number" && (to - from) / (resolution * 1000) > MAX_BUCKETS) {
    throw invalid(`resolution ${resolution} s gives more than ${MAX_BUCKETS} buckets over this range`);
  }
  return { from, to, metrics: parseMetrics(query.metrics), resolution };
}

/** The resolution `auto` stands for, given how many samples the window holds. */
export function autoResolution(from: number, to: number, sampleCount: number): "raw" | number {
  if (sampleCount <= AUTO_RAW_MAX_SAMPLES) return "raw";
  const rangeS = (to - from) / 1000;
  return AUTO_WIDTHS_S.find((width) => rangeS / width <= AUTO_MAX_POINTS) ?? MAX_RESOLUTION_S;
}

/** The coarsest stored rollup level a bucket width can be merged from, or undefined (compute from raw). */
export function rollupLevelFor(widthS: number): RollupLevel | undefined {
  if (widthS % 86_400 === 0) return "1d";
  if (widthS % 3600 === 0) return "1h";
  if (widthS % 60 === 0) return "1m";
  return undefined;
}

/** Windows up to this long count their samples in minute rollups; longer ones in hour rollups. */
export const COUNT_WITH_MINUTES_MS = 6 * 3_600_000;

/** How many samples rollup buckets hold: per bucket, the count of its most frequent metric. */
export function sampleCount(buckets: Buckets, from: number, to: number, widthMs: number): number {
  let count = 0;
  for (const [start, aggs] of Object.entries(buckets)) {
    if (Number(start) + widthMs <= from || Number(start) >= to) continue;
    count += Math.max(0, ...Object.values(aggs).map((agg) => agg.c));
  }
  return count;
}

/** Keeps only the requested metrics, and only samples that still hold one. */
export function selectMetrics(samples: HistorySample[], metrics: string[] | undefined): HistorySample[] {
  if (!metrics) return samples;
  const selected: HistorySample[] = [];
  for (const sample of samples) {
    const m: Record<string, number> = {};
    let any = false;
    for (const name of metrics) {
      const value = sample.m[name];
      if (value === undefined) continue;
      m[name] = value;
      any = true;
    }
    if (any) selected.push({ ...sample, m });
  }
  return selected;
}

/** Per metric, one aggregate per epoch-aligned bucket of `widthS` seconds that holds samples. */
export function downsample(samples: HistorySample[], widthS: number): Record<string, Aggregate[]> {
  const widthMs = widthS * 1000;
  const open = new Map<string, { ts: number; sum: number; min: number; max: number; count: number }>();
  const series: Record<string, Aggregate[]> = {};
  const close = (name: string) => {
    const bucket = open.get(name);
    if (!bucket) return;
    const { ts, sum, min, max, count } = bucket;
    const aggregate = { ts, avg: sum / count, min, max, count };
    const list = series[name];
    if (list) list.push(aggregate);
    else series[name] = [aggregate];
  };
  // Samples arrive ordered by ts, so a metric's bucket is complete once a later one starts.
  for (const sample of samples) {
    const ts = sample.ts - (sample.ts % widthMs);
    for (const [name, value] of Object.entries(sample.m)) {
      const bucket = open.get(name);
      if (bucket && bucket.ts === ts) {
        bucket.sum += value;
        bucket.count++;
        if (value < bucket.min) bucket.min = value;
        if (value > bucket.max) bucket.max = value;
        continue;
      }
      close(name);
      open.set(name, { ts, sum: value, min: value, max: value, count: 1 });
    }
  }
  for (const name of open.keys()) close(name);
  return series;
}
