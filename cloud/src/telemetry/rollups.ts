// Rollup arithmetic: per metric count/sum/min/max of epoch-aligned buckets,
// computed from raw samples or merged from finer rollups. Pure functions; the
// store decides where rollups live.

import type { Aggregate } from "./history-schema.ts";

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** The stored form of one metric's aggregate: count, sum, min, max. */
export interface Agg {
  c: number;
  s: number;
  n: number;
  x: number;
}

/** Metric name -> aggregate, for one bucket. */
export type MetricAggs = Record<string, Agg>;

/** Bucket start (epoch ms, as a string key) -> its aggregates. */
export type Buckets = Record<string, MetricAggs>;

export function floorTo(ts: number, widthMs: number): number {
  return ts - (((ts % widthMs) + widthMs) % widthMs);
}

function addValue(aggs: MetricAggs, name: string, value: number): void {
  const agg = aggs[name];
  if (!agg) {
    aggs[name] = { c: 1, s: value, n: value, x: value };
    return;
  }
  agg.c++;
  agg.s += value;
  if (value < agg.n) agg.n = value;
  if (value > agg.x) agg.x = value;
}

function addAgg(aggs: MetricAggs, name: string, other: Agg): void {
  const agg = aggs[name];
  if (!agg) {
    aggs[name] = { ...other };
    return;
  }
  agg.c += other.c;
  agg.s += other.s;
  if (other.n < agg.n) agg.n = other.n;
  if (other.x > agg.x) agg.x = other.x;
}

/** Buckets of `widthMs` over raw samples. */
export function rollUpSamples(samples: Iterable<{ ts: number; m: Record<string, number> }>, widthMs: number): Buckets {
  const buckets: Buckets = {};
  for (const { ts, m } of samples) {
    const key = String(floorTo(ts, widthMs));
    const aggs = buckets[key] ?? {};
    buckets[key] = aggs;
    for (const [name, value] of Object.entries(m)) addValue(aggs, name, value);
  }
  return buckets;
}

/** One bucket's aggregates summed over finer buckets. */
export function mergeAll(buckets: Buckets): MetricAggs {
  const total: MetricAggs = {};
  for (const aggs of Object.values(buckets)) for (const [name, agg] of Object.entries(aggs)) addAgg(total, name, agg);
  return total;
}

/**
 * Per metric, the series of `widthMs` buckets merged from finer rollup buckets that start in
 * [from, to), ordered by time, keeping only `metrics` when given.
 */
export function seriesFromBuckets(
  buckets: Buckets,
  widthMs: number,
  from: number,
  to: number,
  metrics: string[] | undefined,
): Record<string, Aggregate[]> {
  const merged = new Map<number, MetricAggs>();
  for (const [key, aggs] of Object.entries(buckets)) {
    const start = Number(key);
    if (start < floorTo(from, widthMs) || start >= to) continue;
    const target = floorTo(start, widthMs);
    const into = merged.get(target) ?? {};
    merged.set(target, into);
    for (const [name, agg] of Object.entries(aggs)) if (!metrics || metrics.includes(name)) addAgg(into, name, agg);
  }
  const series: Record<string, Aggregate[]> = {};
  for (const ts of [...merged.keys()].sort((a, b) => a - b)) {
    for (const [name, { c, s, n, x }] of Object.entries(merged.get(ts) ?? {})) {
      const list = series[name] ?? [];
      series[name] = list;
      list.push({ ts, avg: s / c, min: n, max: x, count: c });
    }
  }
  return series;
}
