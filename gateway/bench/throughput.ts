// Benchmark: QoS 1 publish throughput of the gateway with many connected devices, against
// Debian's Mosquitto measured in the same run on the same machine with the same load.
//   npm run bench -w gateway            (CLIENTS=1000 SECONDS=10 by default)
// The gateway runs as its own process (as in production) with its durable queue on disk; a
// stand-in for the cloud accepts every device and every ingest, so the figure is the gateway's.
// Every client subscribes to its telemetry ack topic, as the firmware does: the gateway publishes
// one ack per batch to it (Mosquitto, which knows nothing of them, publishes none).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCloudPeer } from "../test/cloud-peer.ts";
import { startMosquitto, stopProcess } from "../test/mosquitto-broker.ts";
import { connectDevices, startGatewayProcess, telemetry } from "./harness.ts";

const CLIENTS = Number(process.env.CLIENTS || 1000);
const SECONDS = Number(process.env.SECONDS || 10);

interface Run {
  broker: string;
  acked: number;
  seconds: number;
  rate: number;
  /** Telemetry acks the clients received. */
  telemetryAcks: number;
}

/** Connects CLIENTS devices, then each publishes QoS 1 telemetry one at a time (awaiting PUBACK) for SECONDS. */
async function load(
  broker: string,
  port: number,
  credentials: (i: number) => { username?: string; password?: string },
): Promise<Run> {
  const clients = await connectDevices(port, CLIENTS, credentials);
  let telemetryAcks = 0;
  await Promise.all(
    clients.map((client, i) => {
      client.on("message", () => telemetryAcks++);
      return client.subscribeAsync(`d/bench-${i}/telemetry/ack`, { qos: 0 });
    }),
  );
  let acked = 0;
  let running = true;
  const started = performance.now();
  const loops = clients.map(async (client, i) => {
    let seq = 0;
    while (running) {
      await client.publishAsync(`d/bench-${i}/telemetry`, telemetry(seq++), { qos: 1 });
      acked++;
    }
  });
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  running = false;
  await Promise.all(loops);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((client) => client.endAsync(true)));
  return { broker, acked, seconds, rate: acked / seconds, telemetryAcks };
}

const dir = mkdtempSync(join(tmpdir(), "kestrel-bench-"));
const devices = Object.fromEntries(Array.from({ length: CLIENTS }, (_, i) => [`bench-${i}`, `token-${i}`]));
const cloud = await startCloudPeer(devices);
const results: Run[] = [];
try {
  const mosquitto = await startMosquitto(dir);
  try {
    results.push(await load("mosquitto 2 (Debian)", mosquitto.port, () => ({})));
  } finally {
    await mosquitto.stop();
  }

  const gateway = await startGatewayProcess({
    CLOUD_URL: cloud.url,
    GATEWAY_KEY: cloud.gatewayKey,
    GATEWAY_DATA_DIR: join(dir, "gateway"),
  });
  try {
    results.push(
      await load("kestrel gateway (durable queue, fsync)", gateway.port, (i) => ({
        username: `bench-${i}`,
        password: `token-${i}`,
      })),
    );
  } finally {
    await stopProcess(gateway.child);
  }
} finally {
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
}

const [baseline, ours] = results;
process.stdout.write(
  `QoS 1 publish throughput, ${CLIENTS} connected clients, ${SECONDS} s each, one message in flight per client\n`,
);
for (const run of results)
  process.stdout.write(
    `  ${run.broker.padEnd(40)} ${Math.round(run.rate).toString().padStart(8)} msg/s  (${run.acked} acked, ${run.telemetryAcks} telemetry acks received)\n`,
  );
if (baseline && ours) process.stdout.write(`  ratio gateway / mosquitto: ${(ours.rate / baseline.rate).toFixed(2)}\n`);
