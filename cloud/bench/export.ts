// Benchmark: telemetry export of 100,000 and 1,000,000 CSV rows (ROWS: any sizes) from one device
// through the HTTP API, rows/s and the API process's peak RSS and V8 heap, against reading the same
// samples from the store alone in the same run. Each size runs in a fresh API process (bench/cloud-server.ts) whose
// VmRSS is sampled every 10 ms from /proc while a client streams the answer.
//   npm run bench -w cloud -- export   (ROWS=100000,1000000)
// Uses MONGODB_URI when set, else the embedded FerretDB.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TelemetrySample } from "@kestrel/wire";
import { rssBytes } from "../../gateway/bench/harness.ts";
import { stopProcess } from "../../gateway/test/mosquitto-broker.ts";
import { connectDb } from "../src/storage/connect.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { HOUR_MS, TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import { bootstrap } from "../src/tenants/bootstrap.ts";
import { startCloudProcess } from "./processes.ts";

const SIZES = (process.env.ROWS || "100000,1000000").split(",").map(Number);
// One CSV line per metric value: four metrics per sample at 1 Hz.
const METRICS = ["temperature", "pressure", "humidity", "battery"];
const PASSWORD = "bench password, long enough";
const T0 = Date.UTC(2026, 9, 1);
const MB = 1024 * 1024;

function hourOfSamples(hour: number): TelemetrySample[] {
  return Array.from({ length: 3600 }, (_, i) => {
    const seq = hour * 3600 + i;
    return {
      seq,
      ts: T0 + seq * 1000,
      m: {
        temperature: 20 + (seq % 500) / 50,
        pressure: 101_325 - (seq % 97),
        humidity: 40 + (seq % 30),
        battery: 3.7,
      },
    };
  });
}

/** Streams the answer and counts its lines as they come; the body is never held whole. */
async function download(url: string, token: string, progress = { lines: 0, bytes: 0 }) {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok || !response.body) throw new Error(`export answered ${response.status}`);
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    progress.bytes += chunk.length;
    for (const byte of chunk) if (byte === 10) progress.lines++;
  }
  return progress;
}

const dir = await mkdtemp(join(tmpdir(), "kestrel-bench-export-"));
const external = process.env.MONGODB_URI;
const ferret = external ? undefined : await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
const uri = external ?? (ferret?.uri as string);
const dbName = `bench_export_${Date.now()}`;
const database = await connectDb(uri, dbName);
try {
  const org = await bootstrap(database.db, {
    tenantName: "Bench",
    adminEmail: "admin@bench.test",
    adminPassword: PASSWORD,
    deviceIds: ["bench-1"],
  });
  const store = new TelemetryStore(database.db);
  const maxSamples = Math.max(...SIZES) / METRICS.length;
  const hours = Math.ceil(maxSamples / 3600);
  const loadStarted = performance.now();
  for (let hour = 0; hour < hours; hour++) {
    await store.store(org.tenantId, [{ deviceId: "bench-1", batch: { v: 1, boot: 1, samples: hourOfSamples(hour) } }]);
  }
  // Applied now, so the store-alone baseline below times reading, not applying.
  await store.settle();
  process.stdout.write(
    `loaded ${hours * 3600} samples (${hours} hourly buckets) in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s\n`,
  );

  const results: Array<{ rows: number; rowsPerS: number; storeRowsPerS: number; idle: number; peak: number }> = [];
  for (const rows of SIZES) {
    const to = T0 + (rows / METRICS.length) * 1000;

    // Baseline: the same samples read from the store, nothing encoded or sent.
    const readStarted = performance.now();
    let values = 0;
    for await (const hour of store.iterateHours(org.tenantId, "bench-1", T0, to)) {
      for (const sample of hour) values += Object.keys(sample.m).length;
    }
    const storeRowsPerS = values / ((performance.now() - readStarted) / 1000);

    const { child, url, nextLine } = await startCloudProcess(uri, dbName, ["--expose-gc"]);
    const heap = async () => {
      child.kill("SIGUSR2");
      const [fullGcs, maxAfterFullGc, afterForcedGc] = ((await nextLine()) ?? "").split(" ").slice(1).map(Number);
      return { fullGcs: fullGcs ?? 0, maxAfterFullGc: maxAfterFullGc ?? 0, afterForcedGc: afterForcedGc ?? 0 };
    };
    try {
      const login = await fetch(`${url}/api/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "admin@bench.test", password: PASSWORD }),
      });
      const { token } = (await login.json()) as { token: string };
      const exportUrl = (from: number, until: number) =>
        `${url}/api/devices/bench-1/telemetry/export?format=csv&from=${from}&to=${until}`;
      // Warm-up: code paths loaded and compiled before the idle reading.
      await download(exportUrl(T0, T0 + HOUR_MS), token);
      const pid = child.pid as number;
      const idleHeap = await heap();
      const idle = rssBytes(pid);
      let peak = idle;
      // Peak RSS in each tenth of the rows: a plateau shows memory does not grow with rows.
      const tenths = new Array<number>(10).fill(0);
      const progress = { lines: 0, bytes: 0 };
      const sampler = setInterval(() => {
        const rss = rssBytes(pid);
        peak = Math.max(peak, rss);
        const tenth = Math.min(9, Math.floor((progress.lines / rows) * 10));
        tenths[tenth] = Math.max(tenths[tenth] as number, rss);
      }, 10);
      const started = performance.now();
      const got = await download(exportUrl(T0, to), token, progress);
      const seconds = (performance.now() - started) / 1000;
      clearInterval(sampler);
      peak = Math.max(peak, rssBytes(pid));
      const during = await heap();
      if (got.lines !== rows + 1) throw new Error(`expected ${rows + 1} lines, got ${got.lines}`);
      results.push({ rows, rowsPerS: rows / seconds, storeRowsPerS, idle, peak });
      process.stdout.write(
        `${rows} rows (${(got.bytes / MB).toFixed(1)} MB) in ${seconds.toFixed(2)} s: ${Math.round(rows / seconds)} rows/s ` +
          `(store alone ${Math.round(storeRowsPerS)} rows/s); API RSS idle ${(idle / MB).toFixed(1)} MB, ` +
          `peak ${(peak / MB).toFixed(1)} MB\n  peak RSS per tenth of the rows (MB): ${tenths.map((rss) => (rss / MB).toFixed(0)).join(" ")}\n` +
          `  V8 heap used: idle ${(idleHeap.afterForcedGc / MB).toFixed(1)} MB; during the export ${during.fullGcs} full GCs, ` +
          `at most ${(during.maxAfterFullGc / MB).toFixed(1)} MB after one; after it and a forced full GC ${(during.afterForcedGc / MB).toFixed(1)} MB\n`,
      );
    } finally {
      await stopProcess(child);
    }
  }

  const [first, ...larger] = results;
  for (const r of first ? larger : []) {
    process.stdout.write(
      `\npeak RSS ${r.rows}/${first?.rows} rows: ${(r.peak / (first?.peak ?? 1)).toFixed(2)} ` +
        `(growth over idle: ${((r.peak - r.idle) / MB).toFixed(1)} MB vs ${(((first?.peak ?? 0) - (first?.idle ?? 0)) / MB).toFixed(1)} MB)`,
    );
  }
  process.stdout.write("\n");
  for (const r of results) {
    process.stdout.write(
      `export/store-read throughput at ${r.rows} rows: ${(r.rowsPerS / r.storeRowsPerS).toFixed(2)}\n`,
    );
  }
} finally {
  await database.close();
  await ferret?.stop();
  await rm(dir, { recursive: true, force: true });
}
