// What the gateway benchmarks share: brokers as child processes on free loopback ports,
// and a crowd of mqtt.js devices connected in bounded bursts.

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connectAsync, type MqttClient } from "mqtt";
import { waitForPort } from "../test/mosquitto-broker.ts";
import { freePort } from "../test/real-cloud.ts";

const CONNECT_CONCURRENCY = 50;

/**
 * The gateway as `npm start` runs it (`main`: another checkout's entry), in its own process, with its durable queue in dataDir.
 * GATEWAY_CPU_PROF=<dir> writes a V8 CPU profile of it (of each of its processes) there.
 */
export async function startGatewayProcess(
  env: Record<string, string>,
  nodeFlags: string[] = [],
  main = join(import.meta.dirname, "..", "src", "main.ts"),
): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const profile = process.env.GATEWAY_CPU_PROF;
  const flags = [...nodeFlags, ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [])];
  // tsx first: the flags may --import TypeScript modules.
  const child = spawn(process.execPath, ["--import", "tsx", ...flags, main], {
    stdio: "ignore",
    env: { ...process.env, MQTT_PORT: String(port), GATEWAY_HTTP_PORT: "0", LOG_LEVEL: "error", ...env },
  });
  await waitForPort(port, child);
  return { port, child };
}

/** Devices bench-0 … bench-(count-1), connected CONNECT_CONCURRENCY at a time. */
export async function connectDevices(
  port: number,
  count: number,
  credentials: (i: number) => { username?: string; password?: string },
): Promise<MqttClient[]> {
  const clients: MqttClient[] = [];
  for (let i = 0; i < count; i += CONNECT_CONCURRENCY) {
    const batch = [];
    for (let j = i; j < Math.min(i + CONNECT_CONCURRENCY, count); j++) {
      const id = `bench-${j}`;
      batch.push(connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: id, reconnectPeriod: 0, ...credentials(j) }));
    }
    clients.push(...(await Promise.all(batch)));
  }
  return clients;
}

/** A one-sample telemetry batch as the firmware sends it. */
export function telemetry(seq: number): string {
  return JSON.stringify({ v: 1, boot: 1, samples: [{ seq, ts: 1_764_000_000_000 + seq, m: { temperature: 21.5 } }] });
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match?.[1]) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}
