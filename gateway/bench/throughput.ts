// Benchmark: QoS 1 publish throughput of the gateway with many connected devices, against
// Debian's Mosquitto measured in the same run on the same machine with the same load.
//   npm run bench -w gateway            (CLIENTS=1000 SECONDS=10 by default)
// The gateway runs as its own process (as in production) with its durable queue on disk; a
// stand-in for the cloud accepts every device and every ingest, so the figure is the gateway's.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectAsync, type MqttClient } from "mqtt";
import { startCloudPeer } from "../test/cloud-peer.ts";

const CLIENTS = Number(process.env.CLIENTS || 1000);
const SECONDS = Number(process.env.SECONDS || 10);
const CONNECT_CONCURRENCY = 50;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`broker exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.connect(port, "127.0.0.1");
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`port ${port} did not open`);
}

interface Run {
  broker: string;
  acked: number;
  seconds: number;
  rate: number;
}

/** Connects CLIENTS devices, then each publishes QoS 1 telemetry one at a time (awaiting PUBACK) for SECONDS. */
async function load(
  broker: string,
  port: number,
  credentials: (i: number) => { username?: string; password?: string },
): Promise<Run> {
  const clients: MqttClient[] = [];
  for (let i = 0; i < CLIENTS; i += CONNECT_CONCURRENCY) {
    const batch = [];
    for (let j = i; j < Math.min(i + CONNECT_CONCURRENCY, CLIENTS); j++) {
      const id = `bench-${j}`;
      batch.push(connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: id, reconnectPeriod: 0, ...credentials(j) }));
    }
    clients.push(...(await Promise.all(batch)));
  }
  let acked = 0;
  let running = true;
  const started = performance.now();
  const loops = clients.map(async (client, i) => {
    let seq = 0;
    while (running) {
      const batch = { v: 1, boot: 1, samples: [{ seq: seq++, ts: 1_764_000_000_000 + seq, m: { temperature: 21.5 } }] };
      await client.publishAsync(`d/bench-${i}/telemetry`, JSON.stringify(batch), { qos: 1 });
      acked++;
    }
  });
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  running = false;
  await Promise.all(loops);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((client) => client.endAsync(true)));
  return { broker, acked, seconds, rate: acked / seconds };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

const dir = mkdtempSync(join(tmpdir(), "kestrel-bench-"));
const devices = Object.fromEntries(Array.from({ length: CLIENTS }, (_, i) => [`bench-${i}`, `token-${i}`]));
const cloud = await startCloudPeer(devices);
const results: Run[] = [];
try {
  const mosquittoPort = await freePort();
  writeFileSync(
    join(dir, "mosquitto.conf"),
    `listener ${mosquittoPort} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n`,
  );
  const mosquitto = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], { stdio: "ignore" });
  try {
    await waitForPort(mosquittoPort, mosquitto);
    results.push(await load("mosquitto 2 (Debian)", mosquittoPort, () => ({})));
  } finally {
    await stop(mosquitto);
  }

  const gatewayPort = await freePort();
  const gateway = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "..", "src", "main.ts")], {
    stdio: "ignore",
    env: {
      ...process.env,
      MQTT_PORT: String(gatewayPort),
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      GATEWAY_DATA_DIR: join(dir, "gateway"),
      LOG_LEVEL: "error",
    },
  });
  try {
    await waitForPort(gatewayPort, gateway);
    results.push(
      await load("kestrel gateway (durable queue, fsync)", gatewayPort, (i) => ({
        username: `bench-${i}`,
        password: `token-${i}`,
      })),
    );
  } finally {
    await stop(gateway);
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
    `  ${run.broker.padEnd(40)} ${Math.round(run.rate).toString().padStart(8)} msg/s  (${run.acked} acked)\n`,
  );
if (baseline && ours) process.stdout.write(`  ratio gateway / mosquitto: ${(ours.rate / baseline.rate).toFixed(2)}\n`);
