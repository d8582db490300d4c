// Benchmark: memory of the gateway with 1,000 connected devices and a 100,000-message backlog
// (the cloud refusing every delivery, so the durable queue holds them all), against the same
// gateway idle with no client, and Debian's Mosquitto holding the same 1,000 clients after the
// same 100,000 publishes, all measured in one run; the gateway's live heap is read after a full
// collection too (bench/heap-probe.ts, loaded into its process). Then, in this process with a
// forced GC, what the durable queue itself keeps in the heap per queued record (its payloads stay on disk).
//   npm run bench:memory -w gateway     (CLIENTS=1000 BACKLOG=100000 by default)

import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { DiskQueue } from "../src/uplink/disk-queue.ts";
import { startCloudPeer } from "../test/cloud-peer.ts";
import { startMosquitto, stopProcess } from "../test/mosquitto-broker.ts";
import { freePort } from "../test/real-cloud.ts";
import { connectDevices, rssBytes, startGatewayProcess, telemetry } from "./harness.ts";

const CLIENTS = Number(process.env.CLIENTS || 1000);
const BACKLOG = Number(process.env.BACKLOG || 100_000);
const SETTLE_MS = 3000;

interface Sample {
  what: string;
  rss: number;
  heap: number | undefined;
  /** The gateway's heap after a full collection (heap-probe.ts). */
  live: number | undefined;
}

/** BACKLOG QoS 1 publishes spread over the clients, each awaiting its PUBACK before the next. */
async function publishBacklog(clients: MqttClient[]): Promise<void> {
  let next = 0;
  await Promise.all(
    clients.map(async (client, i) => {
      while (next < BACKLOG) {
        await client.publishAsync(`d/bench-${i}/telemetry`, telemetry(next++), { qos: 1 });
      }
    }),
  );
}

async function gatewayMetric(httpPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!match?.[1]) throw new Error(`gateway does not report ${name}`);
  return Number(match[1]);
}

async function measure(what: string, child: ChildProcess, httpPort?: number, probeFile?: string): Promise<Sample> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  if (child.pid === undefined) throw new Error(`${what}: process has no pid`);
  const heap = httpPort === undefined ? undefined : await gatewayMetric(httpPort, "nodejs_heap_used_bytes");
  const rss = rssBytes(child.pid);
  return { what, rss, heap, live: probeFile ? await liveHeap(child, probeFile) : undefined };
}

/** Asks heap-probe.ts in the gateway for its heap after a full collection. */
async function liveHeap(child: ChildProcess, probeFile: string): Promise<number> {
  rmSync(probeFile, { force: true });
  child.kill("SIGUSR2");
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const text = readFileSync(probeFile, "utf8");
      if (text) return Number(text);
    } catch {
      // not written yet
    }
    if (Date.now() > deadline) throw new Error("the gateway's heap probe did not answer");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Heap bytes per record of a DiskQueue holding BACKLOG records, and the records' mean size on disk. */
async function queueHeapPerRecord(queueDir: string): Promise<{ perRecord: number; recordBytes: number }> {
  const gc = globalThis.gc;
  if (!gc) throw new Error("run with node --expose-gc (npm run bench:memory does)");
  const { queue } = await DiskQueue.open({ dir: queueDir, maxBytes: Number.MAX_SAFE_INTEGER });
  gc();
  const before = process.memoryUsage().heapUsed;
  const chunk = 1000;
  for (let seq = 0; seq < BACKLOG; seq += chunk) {
    const appends = [];
    for (let i = seq; i < Math.min(seq + chunk, BACKLOG); i++) appends.push(queue.append(Buffer.from(telemetry(i))));
    await Promise.all(appends);
  }
  gc();
  const perRecord = (process.memoryUsage().heapUsed - before) / queue.length;
  const recordBytes = queue.bytes / queue.length;
  await queue.close();
  return { perRecord, recordBytes };
}

const dir = mkdtempSync(join(tmpdir(), "kestrel-bench-memory-"));
const devices = Object.fromEntries(Array.from({ length: CLIENTS }, (_, i) => [`bench-${i}`, `token-${i}`]));
const cloud = await startCloudPeer(devices);
const samples: Sample[] = [];
let queued = 0;
let queueBytes = 0;
let index = { perRecord: 0, recordBytes: 0 };
try {
  index = await queueHeapPerRecord(join(dir, "queue"));
  const mosquitto = await startMosquitto(dir);
  try {
    const clients = await connectDevices(mosquitto.port, CLIENTS, () => ({}));
    await publishBacklog(clients);
    samples.push(await measure(`mosquitto, ${CLIENTS} clients, after ${BACKLOG} publishes`, mosquitto.child));
    await Promise.all(clients.map((client) => client.endAsync(true)));
  } finally {
    await mosquitto.stop();
  }

  const httpPort = await freePort();
  const probe = join(dir, "heap-probe");
  const gateway = await startGatewayProcess(
    {
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      GATEWAY_DATA_DIR: join(dir, "gateway"),
      GATEWAY_HTTP_PORT: String(httpPort),
      HEAP_PROBE_FILE: probe,
    },
    ["--expose-gc", "--import", join(import.meta.dirname, "heap-probe.ts")],
  );
  try {
    samples.push(await measure("gateway, idle, 0 clients", gateway.child, httpPort, probe));
    const clients = await connectDevices(gateway.port, CLIENTS, (i) => ({
      username: `bench-${i}`,
      password: `token-${i}`,
    }));
    samples.push(await measure(`gateway, ${CLIENTS} clients`, gateway.child, httpPort, probe));
    // The cloud goes away once the devices are in (their credentials stay cached): everything queues.
    cloud.failWith = 503;
    await publishBacklog(clients);
    samples.push(await measure(`gateway, ${CLIENTS} clients, ${BACKLOG} queued`, gateway.child, httpPort, probe));
    queued = await gatewayMetric(httpPort, "kestrel_gateway_queue_depth");
    queueBytes = await gatewayMetric(httpPort, "kestrel_gateway_queue_bytes");
    await Promise.all(clients.map((client) => client.endAsync(true)));
  } finally {
    await stopProcess(gateway.child);
  }
} finally {
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
process.stdout.write(
  `Memory, ${CLIENTS} clients, ${BACKLOG}-message backlog (queue depth ${queued}, ${mib(queueBytes)} on disk)\n`,
);
for (const sample of samples) {
  const heap = sample.heap === undefined ? "" : `  heap ${mib(sample.heap).padStart(10)}`;
  const live = sample.live === undefined ? "" : `  after full GC ${mib(sample.live).padStart(10)}`;
  process.stdout.write(`  ${sample.what.padEnd(52)} rss ${mib(sample.rss).padStart(10)}${heap}${live}\n`);
}
const [mosquittoLoaded, idle, connected, backlog] = samples;
if (mosquittoLoaded && idle && connected && backlog) {
  process.stdout.write(
    `  ratio gateway rss (clients + backlog) / gateway idle: ${(backlog.rss / idle.rss).toFixed(2)}\n`,
  );
  process.stdout.write(
    `  ratio gateway rss (clients + backlog) / mosquitto (clients): ${(backlog.rss / mosquittoLoaded.rss).toFixed(2)}\n`,
  );
  process.stdout.write(
    `  gateway rss growth per queued message: ${((backlog.rss - connected.rss) / Math.max(1, queued)).toFixed(0)} bytes\n`,
  );
  // What the gateway keeps per queued message: its live heap (after a full collection) with and without the backlog.
  if (backlog.live !== undefined && connected.live !== undefined) {
    process.stdout.write(
      `  gateway live heap growth per queued message: ${((backlog.live - connected.live) / Math.max(1, queued)).toFixed(0)} bytes\n`,
    );
  }
}
process.stdout.write(
  `  disk queue heap per record (forced GC): ${index.perRecord.toFixed(0)} bytes, for records of ${index.recordBytes.toFixed(0)} bytes on disk\n`,
);
