// Alerts under load, as deployed: mqtt.js devices (this process) → the real gateway (its own
// process) → the cloud API (its own process) → FerretDB, with the webhook receiver in this process.
// 1. Ingest rate with 100 active alert rules against none, same run, same database server, runs
//    interleaved (none, rules, none, rules; the faster of each pair kept): end to end until every
//    sample is applied, as rules are evaluated when the journal is applied (target >= 0.8x).
// 2. Latency from a sample crossing a threshold at the gateway (its publish) to the alert.fired
//    webhook request at the receiver, p50/p99, while the fleet publishes at fractions of the ingest
//    rate just measured without rules (BENCH_LOAD_FRACTION, default 0.5 and 1: the rules cost some of
//    that rate, so at 1 the pipeline falls behind and the crossings wait behind the backlog).

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { type TelemetryBatch, topics } from "@kestrel/wire";
import type { MqttClient } from "mqtt";
import { connectDevices, startGatewayProcess } from "../../gateway/bench/harness.ts";
import { stopProcess } from "../../gateway/test/mosquitto-broker.ts";
import { freePort } from "../../gateway/test/real-cloud.ts";
import { connectDb } from "../src/storage/connect.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import { bootstrap } from "../src/tenants/bootstrap.ts";
import { percentile } from "./history.ts";
import { gatewayQueued, waitFor } from "./ingest.ts";
import { startCloudProcess } from "./processes.ts";

const DEVICES = Number(process.env.BENCH_DEVICES ?? 50);
const SAMPLES_PER_DEVICE = Number(process.env.BENCH_SAMPLES ?? 100);
const RULES = 100;
const CROSSINGS = Number(process.env.BENCH_CROSSINGS ?? 40);
/** Interleaved runs with and without rules; the fastest of each is compared (a shared machine is noisy). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Publishes a device may have waiting for their PUBACK: the load keeps its rate while the gateway is slow. */
const IN_FLIGHT_PER_DEVICE = 100;
/** The background loads, each as a fraction of the ingest rate measured without rules (1: that rate). */
const LOAD_FRACTIONS = (process.env.BENCH_LOAD_FRACTION ?? "0.5,1").split(",").map(Number);
/** A crossing whose webhook has not come by then counts as missed (the pipeline is behind). */
const CROSSING_TIMEOUT_MS = 60_000;
const PASSWORD = "bench password, long enough";
const FORWARD_BATCH = 200;
/** The device whose crossings are timed: the harness names devices bench-<i>. */
const PROBE = `bench-${DEVICES}`;
const PROBE_RULE = "probe crossing";

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

const load = () =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");

interface Pipeline {
  cloudUrl: string;
  gatewayUrl: string;
  tenantId: string;
  deviceIds: string[];
  clients: MqttClient[];
  store: TelemetryStore;
  token: string;
  stop(): Promise<void>;
}

async function api(pipeline: Pick<Pipeline, "cloudUrl" | "token">, method: string, path: string, body?: unknown) {
  const response = await fetch(`${pipeline.cloudUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${pipeline.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${await response.text()}`);
  return response.json();
}

/** A fresh database on the shared FerretDB, the cloud and the gateway processes, devices connected. */
async function startPipeline(uri: string, dir: string, name: string): Promise<Pipeline> {
  const stops: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    for (const step of stops.reverse()) await step().catch(() => undefined);
  };
  try {
    const dbName = `bench_alerts_${name}_${Date.now()}`;
    const database = await connectDb(uri, dbName);
    stops.push(() => database.close());
    const deviceIds = Array.from({ length: DEVICES }, (_, i) => `bench-${i}`);
    const credentials = await bootstrap(database.db, {
      tenantName: "Bench",
      adminEmail: "a@bench.test",
      adminPassword: PASSWORD,
      deviceIds: [...deviceIds, PROBE],
    });
    const cloud = await startCloudProcess(uri, dbName, [], {
      SECRETS_KEY: randomBytes(32).toString("base64"),
      WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
      DATA_DIR: join(dir, name),
    });
    stops.push(() => stopProcess(cloud.child));
    const gatewayHttpPort = await freePort();
    const gateway = await startGatewayProcess({
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: credentials.gatewayKey,
      GATEWAY_DATA_DIR: join(dir, name, "gateway"),
      GATEWAY_HTTP_PORT: String(gatewayHttpPort),
      FORWARD_INTERVAL_MS: "20",
      FORWARD_MAX_BATCHES: String(FORWARD_BATCH),
    });
    stops.push(() => stopProcess(gateway.child));
    const tokens = new Map(credentials.devices.map((device) => [device.deviceId, device.token]));
    const clients = await connectDevices(gateway.port, DEVICES + 1, (i) => ({
      username: `bench-${i}`,
      password: tokens.get(`bench-${i}`) ?? "",
    }));
    stops.push(() => Promise.all(clients.map((client) => client.endAsync())));
    const login = await fetch(`${cloud.url}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "a@bench.test", password: PASSWORD }),
    });
    const { token } = (await login.json()) as { token: string };
    return {
      cloudUrl: cloud.url,
      gatewayUrl: `http://127.0.0.1:${gatewayHttpPort}`,
      tenantId: credentials.tenantId,
      deviceIds,
      clients,
      store: new TelemetryStore(database.db),
      token,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** 100 rules as an organization would have them: quiet thresholds on every device, a few rate rules, per-tag ones. */
async function addRules(pipeline: Pipeline): Promise<void> {
  for (let i = 0; i < RULES; i++) {
    const condition =
      i % 10 === 9
        ? { kind: "rate", metric: "temperature", perMinute: 1000 + i, direction: "either", windowSeconds: 60 }
        : {
            kind: "threshold",
            metric: i % 2 ? "humidity" : "temperature",
            op: "above",
            high: 1000 + i,
            forSeconds: 60,
          };
    await api(pipeline, "POST", "/api/alerts/rules", { name: `rule ${i}`, condition });
  }
}

function batch(boot: number, seq: number, ts: number, m: Record<string, number>): string {
  const body: TelemetryBatch = { v: 1, boot, samples: [{ seq, ts, m }] };
  return JSON.stringify(body);
}

/** Every device publishes SAMPLES_PER_DEVICE samples at once; seconds until all are applied. */
async function ingestRun(pipeline: Pipeline, boot: number): Promise<number> {
  const t0 = Date.now() - 3_600_000;
  const started = performance.now();
  await Promise.all(
    pipeline.deviceIds.map((deviceId, d) =>
      Promise.all(
        Array.from({ length: SAMPLES_PER_DEVICE }, (_, seq) =>
          pipeline.clients[d]?.publishAsync(
            topics.telemetry(deviceId),
            batch(boot, seq, t0 + seq * 1000, { temperature: 20 + (seq % 10), humidity: 40 + (seq % 7) }),
            { qos: 1 },
          ),
        ),
      ),
    ),
  );
  await waitFor(async () => (await gatewayQueued(pipeline.gatewayUrl)) === 0, started, "draining");
  return waitFor(() => pipeline.store.applied(), started, "applying the journal");
}

export async function alertsBenchmark(): Promise<void> {
  const loadBefore = load();
  const dir = await mkdtemp(join(tmpdir(), "kestrel-bench-alerts-"));
  const ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  const arrivals: number[] = [];
  const receiver = createServer((request, response) => {
    const parts: Buffer[] = [];
    request.on("data", (part: Buffer) => parts.push(part));
    request.on("end", () => {
      const event = JSON.parse(Buffer.concat(parts).toString()) as { type: string; data: { ruleName?: string } };
      // Only the probe's: the load's fast-changing values may fire the rate rules too.
      if (event.type === "alert.fired" && event.data.ruleName === PROBE_RULE) arrivals.push(performance.now());
      response.end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const pipelines: Pipeline[] = [];
  let stopped = false;
  let backgroundDone: Promise<unknown> = Promise.resolve();
  try {
    const plain = await startPipeline(ferret.uri, dir, "none");
    pipelines.push(plain);
    const ruled = await startPipeline(ferret.uri, dir, "rules");
    pipelines.push(ruled);
    await addRules(ruled);
    // Warm-up: connections, caches and JIT on both, not measured.
    await ingestRun(plain, 1);
    await ingestRun(ruled, 1);
    const seconds = { none: [] as number[], rules: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      seconds.none.push(await ingestRun(plain, 2 + round));
      seconds.rules.push(await ingestRun(ruled, 2 + round));
    }
    const total = DEVICES * SAMPLES_PER_DEVICE;
    const rate = (s: number) => total / s;
    const none = rate(Math.min(...seconds.none));
    const rules = rate(Math.min(...seconds.rules));
    print(`alerts: ${DEVICES} devices x ${SAMPLES_PER_DEVICE} samples, QoS 1, end to end until applied, FerretDB`);
    print(`  load average before: ${loadBefore}, after the ingest runs: ${load()}`);
    print(`  fastest of ${ROUNDS} interleaved runs each:`);
    print(
      `  no rules:  ${none.toFixed(0)} samples/s (runs: ${seconds.none.map((s) => rate(s).toFixed(0)).join(", ")})`,
    );
    print(
      `  ${RULES} rules: ${rules.toFixed(0)} samples/s (runs: ${seconds.rules.map((s) => rate(s).toFixed(0)).join(", ")}) = ${(rules / none).toFixed(2)}x (target >= 0.8x)`,
    );

    // 2. Latency under the ingest rate measured without rules (the median run), spread evenly over the fleet,
    //    at each fraction of it in turn.
    await api(ruled, "POST", "/api/webhooks/endpoints", { url: receiverUrl, events: ["alert.fired"] });
    await api(ruled, "POST", "/api/alerts/rules", {
      name: PROBE_RULE,
      scope: { type: "device", deviceId: PROBE },
      condition: { kind: "threshold", metric: "level", op: "above", high: 50, clearHigh: 40, forSeconds: 0 },
    });
    await new Promise((resolve) => setTimeout(resolve, 2500)); // The rule caches (2 s) see the new rule.
    const runs = seconds.none.map(rate).sort((x, y) => x - y);
    const median = runs[Math.floor(runs.length / 2)] ?? none;
    let boot = 9;
    let probeSeq = 0;
    for (const fraction of LOAD_FRACTIONS) {
      // The previous fraction's backlog drained first: each starts from an empty pipeline.
      await waitFor(async () => (await gatewayQueued(ruled.gatewayUrl)) === 0, performance.now(), "draining");
      await waitFor(() => ruled.store.applied(), performance.now(), "applying the journal");
      const target = median * fraction;
      const perDeviceIntervalMs = (1000 * DEVICES) / target;
      const latencies: number[] = [];
      let sent = 0;
      stopped = false;
      boot++;
      const startedLoad = performance.now();
      const background = ruled.deviceIds.map(async (deviceId, d) => {
        const inFlight = new Set<Promise<unknown>>();
        let seq = 0;
        while (!stopped) {
          const next = startedLoad + (seq + 1) * perDeviceIntervalMs + (d * perDeviceIntervalMs) / DEVICES;
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
          if (stopped) break;
          // On schedule, not after the previous PUBACK: a device does not slow down because the gateway does.
          if (inFlight.size >= IN_FLIGHT_PER_DEVICE) await Promise.race(inFlight);
          const publish = ruled.clients[d]?.publishAsync(
            topics.telemetry(deviceId),
            // Slowly varying, as a room's temperature: the 100 quiet rules stay quiet (a rate rule would fire on a
            // sawtooth this fast, and the endpoint's queue would hold the probe's alert behind those).
            batch(boot, seq, Date.now(), { temperature: 20 + (seq % 10) / 100, humidity: 40 }),
            { qos: 1 },
          );
          if (publish) {
            inFlight.add(publish);
            void publish.finally(() => inFlight.delete(publish)).catch(() => undefined);
          }
          seq++;
          sent++;
        }
        await Promise.allSettled(inFlight);
      });
      backgroundDone = Promise.allSettled(background);
      const probe = ruled.clients[DEVICES] as MqttClient;
      for (let i = 0; i < CROSSINGS; i++) {
        const fired = arrivals.length;
        const crossed = performance.now();
        await probe.publishAsync(topics.telemetry(PROBE), batch(1, probeSeq++, Date.now(), { level: 60 }), { qos: 1 });
        while (arrivals.length === fired && performance.now() - crossed < CROSSING_TIMEOUT_MS) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        const arrived = arrivals[fired];
        latencies.push(arrived === undefined ? Number.POSITIVE_INFINITY : arrived - crossed);
        if (arrived === undefined) break; // Behind by a minute: later crossings would queue behind it too.
        await probe.publishAsync(topics.telemetry(PROBE), batch(1, probeSeq++, Date.now(), { level: 30 }), { qos: 1 });
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      const loadSeconds = (performance.now() - startedLoad) / 1000;
      stopped = true;
      await backgroundDone;
      const backlog = await gatewayQueued(ruled.gatewayUrl);
      latencies.sort((x, y) => x - y);
      const missed = latencies.filter((latency) => !Number.isFinite(latency)).length;
      print(
        `  threshold crossing (probe publish) to alert.fired webhook, ${latencies.length} crossings, ${RULES + 1} rules, under ${(sent / loadSeconds).toFixed(0)} samples/s (target ${target.toFixed(0)} = ${fraction} x the rate without rules):`,
      );
      print(
        `    p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, max ${latencies.at(-1)?.toFixed(0)} ms${missed ? `, ${missed} not within ${CROSSING_TIMEOUT_MS / 1000} s` : ""}`,
      );
      print(
        `    the load generator sent ${(sent / loadSeconds / target).toFixed(2)} of its target rate; the gateway's queue held ${backlog} items at the end; load average ${load()}`,
      );
    }
  } finally {
    stopped = true;
    await backgroundDone;
    for (const pipeline of pipelines) await pipeline.stop();
    receiver.close();
    await ferret.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
