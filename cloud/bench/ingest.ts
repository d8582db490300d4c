// End-to-end ingest rate: devices (the compiled load generator, tools/loadgen,
// its own process) publish telemetry batches at QoS 1 to the real gateway (its
// own process, `npm start -w gateway`), which forwards them to the cloud API
// (its own process, cloud-server.ts), which stores them in FerretDB: the shape
// of a deployment. Each process's CPU over the run is reported, the generator's
// among them.
// Baseline, same run and same database: the raw driver's insertMany of
// equivalent per-sample documents from this process, in requests of the
// gateway's forward batch size and of as many samples as one forwarded
// request carries, each measured before and after the pipeline; the fastest
// of these is the baseline.

import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { TelemetryBatch } from "@kestrel/wire";
import type { Db } from "mongodb";
import { startGatewayProcess } from "../../gateway/bench/harness.ts";
import { buildLoadTools, type Load, processTreeCpuSeconds, startLoad } from "../../gateway/bench/loadgen.ts";
import { stopProcess } from "../../gateway/test/mosquitto-broker.ts";
import { freePort } from "../../gateway/test/real-cloud.ts";
import { loadConfig } from "../src/config.ts";
import { connectDb } from "../src/storage/connect.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import { bootstrap } from "../src/tenants/bootstrap.ts";
import { type Service, startCloudProcess } from "./processes.ts";

const DEVICES = Number(process.env.BENCH_DEVICES ?? 50);
const SAMPLES_PER_DEVICE = Number(process.env.BENCH_SAMPLES ?? 100);
/** Samples per MQTT message: 1 is the worst case; the firmware batches 5 by default (manifest samplesPerBatch). */
const SAMPLES_PER_MESSAGE = Number(process.env.BENCH_SAMPLES_PER_MESSAGE ?? 1);
/** Whole runs (fresh database, gateway and cloud each), for the spread of the ratio. */
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const FORWARD_BATCH = 200;
const DRAIN_TIMEOUT_MS = 300_000;
/** The load generator's samples: 1 s apart from this time, one metric (tools/loadgen). */
const T0 = 1_764_000_000_000;

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Seconds the driver's insertMany takes for one document per sample, `batch` documents a request. */
async function rawInsertMany(
  db: Db,
  collection: string,
  batch: number,
  tenantId: string,
  deviceIds: string[],
  sample: (seq: number) => object,
): Promise<number> {
  const raw = db.collection<{ _id: string }>(collection);
  const docs = deviceIds.flatMap((deviceId) =>
    Array.from({ length: SAMPLES_PER_DEVICE }, (_, seq) => ({
      _id: `${tenantId}|${deviceId}|1|${seq}`,
      deviceId,
      ...sample(seq),
    })),
  );
  const started = performance.now();
  for (let i = 0; i < docs.length; i += batch) {
    await raw.insertMany(docs.slice(i, i + batch), { ordered: false });
  }
  return (performance.now() - started) / 1000;
}

/** The raw baseline at both batch sizes (see the top), in fresh collections; seconds per size. */
async function rawBaselines(
  db: Db,
  run: string,
  tenantId: string,
  deviceIds: string[],
  sample: (seq: number) => object,
) {
  const sizes = [...new Set([FORWARD_BATCH, FORWARD_BATCH * SAMPLES_PER_MESSAGE])];
  const seconds = new Map<number, number>();
  for (const size of sizes) {
    seconds.set(size, await rawInsertMany(db, `bench_raw_${run}_${size}`, size, tenantId, deviceIds, sample));
  }
  return seconds;
}

/** Items the gateway (its HTTP side at gatewayUrl) holds that the cloud has not answered 200 for yet. */
export async function gatewayQueued(gatewayUrl: string): Promise<number> {
  const response = await fetch(`${gatewayUrl}/healthz`);
  return ((await response.json()) as { queued: number }).queued;
}

/** A Prometheus text page (a /metrics answer) as its series, `name{labels}`, and their values. */
async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(url)).text();
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    series.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return series;
}

/** How much the series named `name` whose labels hold every one of `labels` (`key="value"`) grew. */
function grew(before: Map<string, number>, after: Map<string, number>, name: string, ...labels: string[]): number {
  let total = 0;
  for (const [series, value] of after) {
    const brace = series.indexOf("{");
    if ((brace < 0 ? series : series.slice(0, brace)) !== name) continue;
    if (!labels.every((label) => series.includes(label))) continue;
    total += value - (before.get(series) ?? 0);
  }
  return total;
}

/**
 * Where the pipeline's time went until stored, from the gateway's and the cloud's own /metrics:
 * the forward requests (how many, their latency, how many in flight on average: their summed time
 * over the run's), the cloud's ingest route and its journal inserts, and the database commands the
 * journal applier sends (replaces, journal deletes, point reads) while ingest runs.
 */
function pipelineWaits(
  gateway: [Map<string, number>, Map<string, number>],
  cloud: [Map<string, number>, Map<string, number>],
  seconds: number,
): string[] {
  const histogram = (pages: typeof gateway, name: string, ...labels: string[]) => {
    const count = grew(...pages, `${name}_count`, ...labels);
    const sum = grew(...pages, `${name}_sum`, ...labels);
    return `${count} x ${count > 0 ? ((sum / count) * 1000).toFixed(1) : "-"} ms (${(sum / seconds).toFixed(2)} in flight)`;
  };
  const route = 'route="/api/gateway/v1/ingest"';
  const command = (name: string) =>
    histogram(cloud, "kestrel_cloud_mongodb_operation_duration_seconds", `command="${name}"`);
  return [
    `  gateway forward requests: ${histogram(gateway, "kestrel_gateway_forward_duration_seconds", 'outcome="ok"')}; ` +
      `retried ${grew(...gateway, "kestrel_gateway_forward_duration_seconds_count", 'outcome="retry"')}`,
    `  cloud ingest route: ${histogram(cloud, "kestrel_cloud_http_request_duration_seconds", route)}; ` +
      `database commands: insert ${command("insert")}, find ${command("find")}, ` +
      `update ${command("update")}, delete ${command("delete")}`,
  ];
}

export async function waitFor(condition: () => Promise<boolean>, started: number, what: string): Promise<number> {
  while (!(await condition())) {
    if (performance.now() - started > DRAIN_TIMEOUT_MS) throw new Error(`${what} did not happen in time`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return (performance.now() - started) / 1000;
}

export async function ingestBenchmark(): Promise<void> {
  const ratios: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    if (RUNS > 1) print(`run ${run} of ${RUNS}`);
    ratios.push(await ingestRun());
  }
  if (RUNS > 1) {
    const sorted = [...ratios].sort((a, b) => a - b);
    print(
      `acknowledged and stored / raw over ${RUNS} runs: ${ratios.map((r) => r.toFixed(2)).join(", ")}` +
        ` (min ${sorted[0]?.toFixed(2)}, median ${sorted[Math.floor(RUNS / 2)]?.toFixed(2)}, max ${sorted.at(-1)?.toFixed(2)});` +
        ` ${ratios.filter((r) => r >= 0.5).length} of ${RUNS} at or above 0.5`,
    );
  }
}

/** One run; answers the acknowledged-and-stored rate over the raw baseline's. */
async function ingestRun(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-bench-ingest-"));
  const ferret = await startEmbeddedFerretDb({
    dataDir: join(dir, "ferretdb"),
    backend: loadConfig(process.env).embeddedBackend,
  });
  const dbName = `bench_ingest_${Date.now()}`;
  const database = await connectDb(ferret.uri, dbName);
  let load: Load | undefined;
  let cloud: Service | undefined;
  let gateway: Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
  try {
    const deviceIds = Array.from({ length: DEVICES }, (_, i) => `bench-${i}`);
    const credentials = await bootstrap(database.db, { tenantName: "Bench", adminEmail: "a@bench.test", deviceIds });
    cloud = await startCloudProcess(ferret.uri, dbName);
    const cloudUrl = cloud.url;
    const gatewayHttpPort = await freePort();
    const gatewayUrl = `http://127.0.0.1:${gatewayHttpPort}`;
    gateway = await startGatewayProcess({
      CLOUD_URL: cloudUrl,
      GATEWAY_KEY: credentials.gatewayKey,
      GATEWAY_DATA_DIR: join(dir, "gateway"),
      GATEWAY_HTTP_PORT: String(gatewayHttpPort),
      FORWARD_INTERVAL_MS: "20",
      FORWARD_MAX_BATCHES: String(FORWARD_BATCH),
    });
    const messages = Math.ceil(SAMPLES_PER_DEVICE / SAMPLES_PER_MESSAGE);
    if (messages * SAMPLES_PER_MESSAGE !== SAMPLES_PER_DEVICE) {
      throw new Error("BENCH_SAMPLES must be a multiple of BENCH_SAMPLES_PER_MESSAGE");
    }
    // All in flight at once, as a device flushing its queue after a reconnect would.
    load = await startLoad((await buildLoadTools()).loadgen, {
      port: gateway.port,
      devices: credentials.devices.map(({ deviceId, token }) => ({ id: deviceId, token })),
      messages,
      inflight: messages,
      samplesPerMessage: SAMPLES_PER_MESSAGE,
      generators: 1,
      brokerPid: gateway.child.pid as number,
    });
    const total = DEVICES * SAMPLES_PER_DEVICE;
    const sample = (seq: number) => ({ seq, ts: T0 + seq * 1000, m: { temperature: 21.5 } });
    const batch = (first: number, count = 1): TelemetryBatch => ({
      v: 1,
      boot: 1,
      samples: Array.from({ length: count }, (_, i) => sample(first + i)),
    });
    const rawBefore = await rawBaselines(database.db, "before", credentials.tenantId, deviceIds, sample);
    const cpu = () => ({
      gateway: processTreeCpuSeconds(gateway?.child.pid ?? -1),
      cloud: processTreeCpuSeconds(cloud?.child.pid ?? -1),
      ferretdb: processTreeCpuSeconds(ferret.pid),
    });
    const metricsPages = () => Promise.all([scrape(`${gatewayUrl}/metrics`), scrape(`${cloudUrl}/metrics`)]);
    const [gatewayBefore, cloudBefore] = await metricsPages();
    const cpuBefore = cpu();
    const loadAverage = loadavg()[0] ?? 0;
    const started = performance.now();
    const published = await load.run();
    if (published.errors > 0) throw new Error(`${published.errors} publishes failed`);
    const acknowledgedS = (performance.now() - started) / 1000;
    // Every publish is acknowledged (on the gateway's disk); stored once the gateway's queue is empty, as the
    // gateway drops an item only after the cloud answered 200, i.e. after the cloud journalled it.
    const endToEndS = await waitFor(async () => (await gatewayQueued(gatewayUrl)) === 0, started, "draining");
    const cpuAfter = cpu();
    const [gatewayAfter, cloudAfter] = await metricsPages();
    // Charts, rollups and latest values follow once the journal is applied.
    const store = new TelemetryStore(database.db);
    const appliedS = await waitFor(() => store.applied(), started, "applying the journal");
    // Cross-check: every sample stored once, none seen twice.
    const counts = await store.readLatest(credentials.tenantId, deviceIds, DEVICES);
    const stored = counts.reduce((sum, { samples }) => sum + samples.stored, 0);
    const duplicates = counts.reduce((sum, { samples }) => sum + samples.duplicates, 0);
    if (stored !== total || duplicates !== 0) {
      throw new Error(`expected ${total} samples stored once, found ${stored} stored and ${duplicates} duplicates`);
    }

    // The cloud's share alone: the same samples POSTed straight to the ingest API (seq moved on, so all are new).
    const direct = deviceIds.flatMap((deviceId) =>
      Array.from({ length: SAMPLES_PER_DEVICE }, (_, seq) => ({ deviceId, batch: batch(SAMPLES_PER_DEVICE + seq) })),
    );
    const cloudStarted = performance.now();
    for (let i = 0; i < direct.length; i += FORWARD_BATCH) {
      const response = await fetch(`${cloudUrl}/api/gateway/v1/ingest`, {
        method: "POST",
        headers: { authorization: `Bearer ${credentials.gatewayKey}`, "content-type": "application/json" },
        body: JSON.stringify({ telemetry: direct.slice(i, i + FORWARD_BATCH) }),
      });
      if (response.status !== 200) throw new Error(`ingest answered ${response.status}`);
    }
    const cloudS = (performance.now() - cloudStarted) / 1000;

    const rawAfter = await rawBaselines(database.db, "after", credentials.tenantId, deviceIds, sample);
    const rawS = Math.min(...rawBefore.values(), ...rawAfter.values());
    const rate = (seconds: number) => (total / seconds).toFixed(0);
    const ratio = (seconds: number) => `${(rawS / seconds).toFixed(2)}x raw`;
    print(
      `ingest: ${DEVICES} devices x ${SAMPLES_PER_DEVICE} samples in batches of ${SAMPLES_PER_MESSAGE}, QoS 1, FerretDB (target >= 0.5x raw)`,
    );
    print(`  raw driver insertMany, same documents: ${rate(rawS)} samples/s, the fastest of`);
    for (const [size, seconds] of rawBefore) {
      print(
        `    ${size} a request: before ${rate(seconds)}, after ${rate(rawAfter.get(size) ?? Number.NaN)} samples/s`,
      );
    }
    print(`  publishes acknowledged by the gateway (on its disk): ${rate(acknowledgedS)} samples/s`);
    print(`  end-to-end, acknowledged and stored:  ${rate(endToEndS)} samples/s = ${ratio(endToEndS)}`);
    print(`  end-to-end, applied (history, rollups, latest): ${rate(appliedS)} samples/s = ${ratio(appliedS)}`);
    print(`  cloud ingest API alone, POSTs of ${FORWARD_BATCH} items: ${rate(cloudS)} samples/s = ${ratio(cloudS)}`);
    const share = (name: keyof typeof cpuAfter) => ((cpuAfter[name] - cpuBefore[name]) / endToEndS).toFixed(2);
    print(
      `  CPU until stored, in cores: gateway ${share("gateway")}, cloud ${share("cloud")}, FerretDB ${share("ferretdb")}; ` +
        `load generator ${published.generatorCores.toFixed(2)} while publishing; load average at start ${loadAverage.toFixed(2)}`,
    );
    for (const line of pipelineWaits([gatewayBefore, gatewayAfter], [cloudBefore, cloudAfter], endToEndS)) print(line);
    return rawS / endToEndS;
  } finally {
    await load?.close();
    if (gateway) await stopProcess(gateway.child);
    if (cloud) await stopProcess(cloud.child);
    await database.close();
    await ferret.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
