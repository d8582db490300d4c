import assert from "node:assert/strict";
import { test } from "node:test";
import { Problem } from "../src/http/problem.ts";
import {
  AUTO_MAX_POINTS,
  AUTO_RAW_MAX_SAMPLES,
  autoResolution,
  downsample,
  parseHistoryQuery,
  selectMetrics,
} from "../src/telemetry/history.ts";
import type { HistorySample } from "../src/telemetry/history-schema.ts";

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);

test("auto keeps raw up to the sample limit, then picks the smallest width under the point budget", () => {
  const day = 86_400_000;
  assert.equal(autoResolution(NOW - day, NOW, AUTO_RAW_MAX_SAMPLES), "raw");
  // One day is 86,400 s: 60 s gives 1,440 points, 120 s gives 720.
  assert.equal(autoResolution(NOW - day, NOW, AUTO_RAW_MAX_SAMPLES + 1), 120);
  assert.equal(autoResolution(NOW - 3_600_000, NOW, 10_000), 5);
  for (const range of [3_600_000, day, 7 * day, 31 * day]) {
    const width = autoResolution(NOW - range, NOW, 1e9);
    assert.ok(typeof width === "number" && range / (width * 1000) <= AUTO_MAX_POINTS, `range ${range}`);
  }
});

test("downsample aligns buckets to the epoch and aggregates each metric on its own", () => {
  const t = NOW + 7_000;
  const series = downsample(
    [
      { boot: 1, seq: 0, ts: t, m: { a: 1, b: 10 } },
      { boot: 1, seq: 1, ts: t + 1000, m: { a: 3 } },
      { boot: 1, seq: 2, ts: t + 2000, m: { a: -2, b: 20 } },
      { boot: 1, seq: 3, ts: t + 11_000, m: { b: 5 } },
    ],
    10,
  );
  assert.deepEqual(series, {
    a: [{ ts: NOW, avg: 2 / 3, min: -2, max: 3, count: 3 }],
    b: [
      { ts: NOW, avg: 15, min: 10, max: 20, count: 2 },
      { ts: NOW + 10_000, avg: 5, min: 5, max: 5, count: 1 },
    ],
  });
  assert.deepEqual(downsample([], 60), {});
});

test("selectMetrics drops samples that hold none of the requested metrics", () => {
  const samples: HistorySample[] = [
    { boot: 1, seq: 0, ts: NOW, m: { a: 1, b: 2 } },
    { boot: 1, seq: 1, ts: NOW + 1, m: { b: 3 } },
  ];
  assert.deepEqual(selectMetrics(samples, ["a"]), [{ boot: 1, seq: 0, ts: NOW, m: { a: 1 } }]);
  assert.equal(selectMetrics(samples, undefined), samples);
});

test("parseHistoryQuery resolves defaults and rejects what it cannot answer", () => {
  assert.deepEqual(parseHistoryQuery({}, NOW), {
    from: NOW - 3_600_000,
    to: NOW,
    metrics: undefined,
    resolution: "auto",
  });
  assert.deepEqual(parseHistoryQuery({ to: "2026-11-29T12:00:00Z", metrics: "a,b,a", resolution: "300" }, 0), {
    from: NOW - 3_600_000,
    to: NOW,
    metrics: ["a", "b"],
    resolution: 300,
  });
  for (const query of [{ from: "1e12" }, { to: "2026-13-45" }, { resolution: "-5" }, { metrics: "a,,b" }]) {
    assert.throws(
      () => parseHistoryQuery(query, NOW),
      (error: unknown) => error instanceof Problem && error.status === 400 && error.code === "invalid_query",
      JSON.stringify(query),
    );
  }
});
