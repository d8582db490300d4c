// Chart query speed on a large history: one device with 1,000,000 raw samples
// over 30 days. The 30-day query at automatic resolution (served from rollups)
// against the same query answered from raw samples (every hourly bucket read
// and downsampled at query time, as before rollups existed), same run, same
// database. Data is loaded with TelemetryStore.importSamples: the store's own
// bucket and rollup writers, without the journal and sample ids, which history
// reads never touch.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { connectDb } from "../src/storage/connect.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { downsample, selectMetrics } from "../src/telemetry/history.ts";
import type { HistorySample } from "../src/telemetry/history-schema.ts";
import { DAY_MS } from "../src/telemetry/rollups.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import { bootstrap } from "../src/tenants/bootstrap.ts";

const SAMPLES = Number(process.env.BENCH_HISTORY_SAMPLES ?? 1_000_000);
const DAYS = 30;
/** Days the samples span, ending at TO (the query always spans 30 days): fewer days, same samples = denser hours. */
const DATA_DAYS = Number(process.env.BENCH_HISTORY_DAYS ?? DAYS);
const AUTO_RUNS = Number(process.env.BENCH_AUTO_RUNS ?? 50);
const RAW_RUNS = Number(process.env.BENCH_RAW_RUNS ?? 3);
const TO = Date.UTC(2026, 10, 1);
const FROM = TO - DAYS * DAY_MS;
const DEVICE = "bench-history";
const PASSWORD = "bench password, long enough";

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function timed(runs: number, query: () => Promise<void>): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await query();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function load(store: TelemetryStore, tenantId: string): Promise<void> {
  const first = TO - DATA_DAYS * DAY_MS;
  const stepMs = (DATA_DAYS * DAY_MS) / SAMPLES;
  let seq = 0;
  for (let day = first; day < TO; day += DAY_MS) {
    const samples: HistorySample[] = [];
    for (; seq < SAMPLES && first + seq * stepMs < day + DAY_MS; seq++) {
      const ts = Math.floor(first + seq * stepMs);
      samples.push({ boot: 1, seq, ts, m: { temperature: 20 + Math.sin(seq / 500) * 5, humidity: 40 + (seq % 20) } });
    }
    await store.importSamples(tenantId, DEVICE, samples);
  }
}

type Series = Record<string, unknown[]>;

/** The rollup answer must hold the same buckets, with the same counts, as the answer computed from raw samples. */
function crossCheck(auto: Series, raw: Series): void {
  for (const name of new Set([...Object.keys(auto), ...Object.keys(raw)])) {
    const counts = (series: Series) =>
      new Map(((series[name] ?? []) as Array<{ ts: number; count: number }>).map(({ ts, count }) => [ts, count]));
    const [fromRollups, fromRaw] = [counts(auto), counts(raw)];
    const differences: string[] = [];
    for (const ts of new Set([...fromRollups.keys(), ...fromRaw.keys()])) {
      if (fromRollups.get(ts) !== fromRaw.get(ts)) {
        differences.push(`${new Date(ts).toISOString()}: rollups ${fromRollups.get(ts)}, raw ${fromRaw.get(ts)}`);
      }
    }
    if (differences.length > 0) {
      throw new Error(
        `${name}: ${fromRollups.size} buckets from rollups, ${fromRaw.size} from raw; differing buckets (count):\n  ${differences.slice(0, 20).join("\n  ")}`,
      );
    }
  }
}

async function login(app: FastifyInstance, email: string): Promise<string> {
  const response = await app.inject({ method: "POST", url: "/api/auth/login", payload: { email, password: PASSWORD } });
  if (response.statusCode !== 200) throw new Error(`login answered ${response.statusCode}`);
  return response.json<{ token: string }>().token;
}

export async function historyBenchmark(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-bench-history-"));
  const ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  const config = loadConfig({ DATA_DIR: dir });
  const database = await connectDb(ferret.uri, config.mongoDb);
  try {
    const email = "admin@history.bench";
    const credentials = await bootstrap(database.db, {
      tenantName: "Bench",
      adminEmail: email,
      adminPassword: PASSWORD,
      deviceIds: [DEVICE],
    });
    const store = new TelemetryStore(database.db);
    const loadStarted = performance.now();
    await load(store, credentials.tenantId);
    const loadS = (performance.now() - loadStarted) / 1000;
    const app = await buildApp({ db: database.db, config });
    try {
      const token = await login(app, email);
      let autoAnswer: { resolution: number; series: Record<string, unknown[]> } | undefined;
      const auto = await timed(AUTO_RUNS, async () => {
        const response = await app.inject({
          method: "GET",
          url: `/api/devices/${DEVICE}/telemetry?from=${FROM}&to=${TO}`,
          headers: { authorization: `Bearer ${token}` },
        });
        if (response.statusCode !== 200) throw new Error(`history answered ${response.statusCode}: ${response.body}`);
        autoAnswer = response.json();
      });
      if (!autoAnswer) throw new Error("no answer");
      const width = autoAnswer.resolution;
      let rawSeries: ReturnType<typeof downsample> = {};
      const raw = await timed(RAW_RUNS, async () => {
        const samples = await store.read(credentials.tenantId, DEVICE, FROM, TO);
        rawSeries = downsample(selectMetrics(samples, undefined), width);
      });
      const points = autoAnswer.series.temperature?.length ?? 0;
      crossCheck(autoAnswer.series, rawSeries);
      print(
        `history: 1 device, ${SAMPLES} raw samples over ${DATA_DAYS} days, FerretDB; loaded in ${loadS.toFixed(1)} s`,
      );
      print(`  30-day query, auto resolution (${width} s from rollups, ${points} points per metric):`);
      print(`    p50 ${auto.p50.toFixed(1)} ms, p99 ${auto.p99.toFixed(1)} ms (${AUTO_RUNS} runs)`);
      print(
        `  same query from raw samples: p50 ${raw.p50.toFixed(0)} ms, p99 ${raw.p99.toFixed(0)} ms (${RAW_RUNS} runs)`,
      );
      print(
        `  speed-up at p50: ${(raw.p50 / auto.p50).toFixed(0)}x, at p99: ${(raw.p99 / auto.p99).toFixed(0)}x (target >= 20x)`,
      );
    } finally {
      await app.close();
    }
  } finally {
    await database.close();
    await ferret.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
