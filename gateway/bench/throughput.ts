// Benchmark: QoS 1 publish throughput and publish→PUBACK latency of the gateway against two peer
// brokers, Debian's Mosquitto (C) and mochi-mqtt (Go), each alone on the machine in turn, same run.
//   npm run bench -w gateway     (CLIENTS=10,100,1000 SECONDS=10 BROKERS=mosquitto,mochi,gateway)
//   GATEWAY_WORKERS=1,2          the gateway is measured with each of these process counts
//   GATEWAY_CPU_PROF=<dir>       writes a V8 CPU profile of each gateway process there (--cpu-prof)
//   BROKERS=...,aedes,session    also the bare MQTT layers (bench/bare-broker.ts): aedes, and the
//                                gateway's own session server, without authentication, intake or disk
//   GATEWAY_BASELINE=<git rev>   that revision's gateway too, alternating with this one (BENCH_ROUNDS
//                                times each), and their median CPU a message compared: a change's cut,
//                                measured under the same load (its @kestrel/wire is today's)
// The load comes from the compiled generator (tools/loadgen) with its raw MQTT client: one publish
// in flight per client, every client subscribed to its telemetry-ack topic as the firmware is.
// Mosquitto is driven by one and by two generator processes, and every run reports the CPU the
// broker and the generator used: a generator that is not the limit gives the same figure from two
// processes, and leaves the broker a full core. Mosquitto is also driven once by the generator's paho
// client (paho.mqtt.golang), the one it used first, to show that client's limit beside the raw one. The gateway runs as its own process with its durable queue (fsync before PUBACK) and
// per-device token authentication; a stand-in for the cloud accepts every device and ingest.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startCloudPeer } from "../test/cloud-peer.ts";
import { startMosquitto, stopProcess, waitForPort } from "../test/mosquitto-broker.ts";
import { freePort } from "../test/real-cloud.ts";
import { startGatewayProcess } from "./harness.ts";
import { buildLoadTools, type LoadClient, type LoadResult, startLoad } from "./loadgen.ts";

function list(name: string, fallback: string): string[] {
  return (process.env[name] || fallback).split(",").map((item) => item.trim());
}

const CLIENT_COUNTS = list("CLIENTS", "10,100,1000").map(Number);
const SECONDS = Number(process.env.SECONDS || 10);
const BROKERS = list("BROKERS", "mosquitto,mochi,gateway");
const GATEWAY_WORKERS = list("GATEWAY_WORKERS", "1,2").map(Number);
if ([...CLIENT_COUNTS, ...GATEWAY_WORKERS].some((n) => !Number.isInteger(n) || n < 1) || !(SECONDS > 0)) {
  throw new Error("CLIENTS and GATEWAY_WORKERS must be lists of positive integers, SECONDS a positive number");
}
const BASELINE = process.env.GATEWAY_BASELINE;
const ROUNDS = Number(process.env.BENCH_ROUNDS || 1);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error("BENCH_ROUNDS must be a positive integer");
const KNOWN_BROKERS = ["mosquitto", "mochi", "gateway", "aedes", "session"];
const unknown = BROKERS.filter((broker) => !KNOWN_BROKERS.includes(broker));
if (unknown.length > 0) throw new Error(`BROKERS may name ${KNOWN_BROKERS.join(", ")}, not ${unknown.join(", ")}`);

interface Broker {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

interface Row {
  broker: string;
  clients: number;
  generators: number;
  client: LoadClient;
  /** One-minute load average just before the run. */
  load: number;
  result: LoadResult;
}

const tools = await buildLoadTools();
const dir = mkdtempSync(join(tmpdir(), "kestrel-bench-"));
const maxClients = Math.max(...CLIENT_COUNTS);
const cloud = await startCloudPeer(
  Object.fromEntries(Array.from({ length: maxClients }, (_, i) => [`bench-${i}`, `token-${i}`])),
);

async function startMochi(): Promise<Broker> {
  const port = await freePort();
  const child = spawn(tools.mochi, [`-addr=127.0.0.1:${port}`], { stdio: ["ignore", "ignore", "inherit"] });
  await waitForPort(port, child);
  return { port, child, stop: () => stopProcess(child) };
}

/** An MQTT layer alone, as its own process (bench/bare-broker.ts); GATEWAY_CPU_PROF profiles it too. */
async function startBareLayer(layer: "aedes" | "session"): Promise<Broker> {
  const port = await freePort();
  const profile = process.env.GATEWAY_CPU_PROF;
  const flags = profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [];
  const script = join(import.meta.dirname, "bare-broker.ts");
  const child = spawn(process.execPath, ["--import", "tsx", ...flags, script, layer, String(port)], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitForPort(port, child);
  return { port, child, stop: () => stopProcess(child) };
}

async function startGateway(run: number, workers: number, main?: string): Promise<Broker> {
  const { port, child } = await startGatewayProcess(
    {
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      GATEWAY_DATA_DIR: join(dir, `gateway-${run}`),
      GATEWAY_WORKERS: String(workers),
    },
    [],
    main,
  );
  return { port, child, stop: () => stopProcess(child) };
}

/** The entry of `rev`'s gateway, extracted under .local so that its imports resolve to this repository's packages. */
function baselineMain(rev: string): { main: string; remove(): void } {
  const root = join(import.meta.dirname, "..", "..");
  mkdirSync(join(root, ".local"), { recursive: true });
  const out = mkdtempSync(join(root, ".local", "bench-baseline-"));
  const archive = spawnSync("git", ["archive", rev, "gateway"], { cwd: root, maxBuffer: 1 << 30 });
  if (archive.status !== 0) throw new Error(`git archive ${rev} gateway: ${archive.stderr.toString()}`);
  const tar = spawnSync("tar", ["-x", "-C", out], { input: archive.stdout });
  if (tar.status !== 0) throw new Error(`extracting ${rev}: ${tar.stderr.toString()}`);
  return { main: join(out, "gateway", "src", "main.ts"), remove: () => rmSync(out, { recursive: true, force: true }) };
}
const baseline = BASELINE ? baselineMain(BASELINE) : undefined;

const rows: Row[] = [];
let runs = 0;
async function measure(
  broker: string,
  start: () => Promise<Broker>,
  clients: number,
  generators: number,
  client: LoadClient = "raw",
) {
  const started = await start();
  try {
    const load = loadavg()[0] ?? 0;
    if (started.child.pid === undefined) throw new Error(`${broker}: no process id`);
    const generator = await startLoad(tools.loadgen, {
      port: started.port,
      devices: Array.from({ length: clients }, (_, i) =>
        broker.startsWith("gateway") ? { id: `bench-${i}`, token: `token-${i}` } : { id: `bench-${i}` },
      ),
      seconds: SECONDS,
      generators,
      client,
      brokerPid: started.child.pid,
    });
    const result = await generator.run().finally(() => generator.close());
    if (result.errors > 0) throw new Error(`${broker}: ${result.errors} publishes failed`);
    const row = { broker, clients, generators, client, load, result };
    rows.push(row);
    process.stdout.write(`${format(row)}\n`);
  } finally {
    await started.stop();
  }
}

/** The broker's CPU a message acknowledged: the figure least sensitive to what else runs on the machine. */
function microsPerMessage({ result }: Row): number {
  return (result.brokerCores * result.seconds * 1e6) / result.acked;
}

function format(row: Row): string {
  const { broker, clients, generators, client, load, result } = row;
  const cells = [
    clients.toLocaleString("en"),
    broker,
    client,
    String(generators),
    Math.round(result.rate).toLocaleString("en"),
    result.p50Ms.toFixed(1),
    result.p99Ms.toFixed(1),
    result.brokerCores.toFixed(2),
    Math.round(microsPerMessage(row)).toString(),
    result.generatorCores.toFixed(2),
    result.telemetryAcks.toLocaleString("en"),
    load.toFixed(2),
  ];
  return `| ${cells.join(" | ")} |`;
}

process.stdout.write(
  `QoS 1, one publish in flight per client, ${SECONDS} s a run; load average at start ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}\n\n`,
);
process.stdout.write(
  "| clients | broker | generator client | generators | msg/s | p50 ms | p99 ms | broker CPU (cores) | broker CPU µs/msg | generator CPU (cores) | telemetry acks | load avg |\n",
);
process.stdout.write("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
try {
  for (const clients of CLIENT_COUNTS) {
    if (BROKERS.includes("mosquitto")) {
      for (const generators of [1, 2]) await measure("mosquitto", () => startMosquitto(dir), clients, generators);
      await measure("mosquitto", () => startMosquitto(dir), clients, 1, "paho");
    }
    if (BROKERS.includes("mochi")) await measure("mochi-mqtt", startMochi, clients, 1);
    for (const layer of ["aedes", "session"] as const) {
      if (BROKERS.includes(layer)) await measure(`bare ${layer}`, () => startBareLayer(layer), clients, 1);
    }
    for (const workers of BROKERS.includes("gateway") ? GATEWAY_WORKERS : []) {
      const name = workers === 1 ? "gateway (1 process)" : `gateway (${workers} workers)`;
      for (let round = 0; round < ROUNDS; round++) {
        if (baseline) {
          const main = baseline.main;
          await measure(`${name} @${BASELINE}`, () => startGateway(runs++, workers, main), clients, 1);
        }
        await measure(name, () => startGateway(runs++, workers), clients, 1);
      }
    }
  }
} finally {
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
  baseline?.remove();
}

process.stdout.write("\n");
for (const clients of CLIENT_COUNTS) {
  // Against the raw client's runs only: the paho run shows that client's limit, not the broker's.
  const best = (broker: string) =>
    Math.max(
      0,
      ...rows
        .filter((r) => r.broker === broker && r.clients === clients && r.client === "raw")
        .map((r) => r.result.rate),
    );
  const mosquitto = best("mosquitto");
  if (mosquitto === 0) continue;
  for (const broker of [...new Set(rows.map((row) => row.broker))].filter((broker) => broker !== "mosquitto")) {
    const rate = best(broker);
    if (rate > 0) {
      process.stdout.write(
        `${clients} clients: ${broker} / mosquitto (best of its raw-client runs) = ${(rate / mosquitto).toFixed(2)}\n`,
      );
    }
  }
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
const suffix = ` @${BASELINE}`;
const compared = new Map<string, { clients: number; name: string }>();
for (const row of BASELINE ? rows.filter((r) => r.broker.endsWith(suffix)) : []) {
  compared.set(`${row.clients} ${row.broker}`, { clients: row.clients, name: row.broker.slice(0, -suffix.length) });
}
for (const { clients, name } of compared.values()) {
  const of = (broker: string) => rows.filter((r) => r.broker === broker && r.clients === clients).map(microsPerMessage);
  const before = median(of(name + suffix));
  const after = median(of(name));
  process.stdout.write(
    `${clients} clients, ${name}: ${after.toFixed(1)} µs/msg against ${before.toFixed(1)} at ${BASELINE} ` +
      `(medians of ${ROUNDS} runs each): ${(((after - before) / before) * 100).toFixed(1)}%\n`,
  );
}
process.stdout.write(
  `load average at end ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}\n`,
);
