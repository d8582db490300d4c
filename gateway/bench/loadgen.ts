// The compiled load generator (tools/loadgen, Go) driven from the benchmarks: built with `go build`,
// run as one or more processes that share the clients and start on the same line, with the CPU
// used meanwhile by the generator and by the broker under test, so a result shows which was the limit.

import { execFile, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

const ROOT = join(import.meta.dirname, "..", "..");
const LOADGEN_DIR = join(ROOT, "tools", "loadgen");
const BIN = join(ROOT, ".local", "bin");
const CLOCK_TICKS_PER_SECOND = 100;

export interface LoadTools {
  loadgen: string;
  /** mochi-mqtt, the second peer broker. */
  mochi: string;
}

/** Builds the generator and the Go peer broker into .local/bin; Go's build cache makes a rebuild of nothing cheap. */
export async function buildLoadTools(): Promise<LoadTools> {
  const tools = { loadgen: join(BIN, "kestrel-loadgen"), mochi: join(BIN, "mochi-broker") };
  const go = promisify(execFile);
  await go("go", ["build", "-trimpath", "-o", tools.loadgen, "."], { cwd: LOADGEN_DIR });
  await go("go", ["build", "-trimpath", "-o", tools.mochi, "./mochi-broker"], { cwd: LOADGEN_DIR });
  return tools;
}

/** One client of the generator: a device id, with its token when the broker authenticates devices. */
export interface LoadDevice {
  id: string;
  token?: string;
}

/** The generator's MQTT client: its own on the connection (raw), or paho.mqtt.golang, kept for comparison. */
export type LoadClient = "raw" | "paho";

export interface LoadOptions {
  port: number;
  /** Raw by default. */
  client?: LoadClient;
  devices: LoadDevice[];
  /** Publish for this long, or `messages` per client when that is set. */
  seconds?: number;
  messages?: number;
  /** QoS 1 publishes in flight per client (1 by default: each waits for the previous PUBACK). */
  inflight?: number;
  /** Samples per telemetry batch (1 by default). */
  samplesPerMessage?: number;
  /** Generator processes sharing the clients. */
  generators: number;
  /** The broker's process, whose CPU (with its children's) is measured over the window. */
  brokerPid: number;
}

export interface LoadResult {
  acked: number;
  errors: number;
  telemetryAcks: number;
  seconds: number;
  rate: number;
  /** Publish to PUBACK, over every publish of every generator. */
  p50Ms: number;
  p99Ms: number;
  /** CPU used over the window, in cores (1 = one core busy the whole time). */
  brokerCores: number;
  generatorCores: number;
}

/** What one generator process prints last (tools/loadgen Result). */
interface GeneratorResult {
  acked: number;
  errors: number;
  telemetryAcks: number;
  seconds: number;
  cpuSeconds: number;
}

/** Connected generators, waiting for the start. */
export interface Load {
  /** Starts every generator's publishing at once and resolves with the result once all are done. */
  run(): Promise<LoadResult>;
  /** Ends the generators still running and removes their files. */
  close(): Promise<void>;
}

/** Spawns the generator processes (the clients split among them) and resolves once every client is connected. */
export async function startLoad(loadgen: string, options: LoadOptions): Promise<Load> {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-loadgen-"));
  const share = Math.ceil(options.devices.length / options.generators);
  const generators = await Promise.all(
    Array.from({ length: options.generators }, async (_, g) => {
      const devices = join(dir, `devices-${g}`);
      const mine = options.devices.slice(g * share, (g + 1) * share);
      await writeFile(devices, mine.map((device) => [device.id, device.token ?? ""].join(" ")).join("\n"));
      const latencies = join(dir, `latencies-${g}`);
      const args = [
        `-client=${options.client ?? "raw"}`,
        `-url=tcp://127.0.0.1:${options.port}`,
        `-devices=${devices}`,
        `-seconds=${options.seconds ?? 0}`,
        `-messages=${options.messages ?? 0}`,
        `-inflight=${options.inflight ?? 1}`,
        `-samples=${options.samplesPerMessage ?? 1}`,
        `-latencies=${latencies}`,
      ];
      const child = spawn(loadgen, args, { stdio: ["pipe", "pipe", "inherit"] });
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      const nextLine = async (what: string): Promise<unknown> => {
        const line = await lines.next();
        if (line.done) throw new Error(`load generator ${g} exited with ${await exited} before ${what}`);
        return JSON.parse(line.value);
      };
      return { child, latencies, nextLine, exited };
    }),
  );
  const close = async () => {
    for (const generator of generators) if (generator.child.exitCode === null) generator.child.kill();
    await Promise.all(generators.map((generator) => generator.exited));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(generators.map((generator) => generator.nextLine("its clients were connected")));
  } catch (error) {
    await close();
    throw error;
  }
  return {
    close,
    async run() {
      const brokerBefore = processTreeCpuSeconds(options.brokerPid);
      for (const generator of generators) generator.child.stdin.write("go\n");
      const results = (await Promise.all(
        generators.map((generator) => generator.nextLine("its result")),
      )) as GeneratorResult[];
      const brokerCpu = processTreeCpuSeconds(options.brokerPid) - brokerBefore;
      await Promise.all(generators.map((generator) => generator.exited));
      const seconds = Math.max(...results.map((result) => result.seconds));
      const sum = (field: keyof GeneratorResult) => results.reduce((total, result) => total + result[field], 0);
      const latencies = await mergedLatencies(generators.map((generator) => generator.latencies));
      return {
        acked: sum("acked"),
        errors: sum("errors"),
        telemetryAcks: sum("telemetryAcks"),
        seconds,
        rate: sum("acked") / seconds,
        p50Ms: percentile(latencies, 0.5) / 1000,
        p99Ms: percentile(latencies, 0.99) / 1000,
        brokerCores: brokerCpu / seconds,
        generatorCores: sum("cpuSeconds") / seconds,
      };
    },
  };
}

/** Every generator's latencies (microseconds, uint32 little-endian), sorted. */
async function mergedLatencies(files: string[]): Promise<Uint32Array> {
  const parts = await Promise.all(files.map((file) => readFile(file)));
  const merged = new Uint32Array(parts.reduce((total, part) => total + part.length / 4, 0));
  let at = 0;
  for (const part of parts) {
    const values = new Uint32Array(part.buffer, part.byteOffset, part.length / 4);
    merged.set(values, at);
    at += values.length;
  }
  return merged.sort();
}

function percentile(sorted: Uint32Array, p: number): number {
  return sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0);
}

/** CPU time (user + system) of a process and of every process below it, from /proc (Linux). */
export function processTreeCpuSeconds(pid: number): number {
  const stats = new Map<number, { parent: number; ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // The command name, in parentheses, may hold spaces: fields are counted after its closing one.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    stats.set(Number(entry), { parent: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
  }
  const tree = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [child, stat] of stats) {
      if (!tree.has(child) && tree.has(stat.parent)) {
        tree.add(child);
        grew = true;
      }
    }
  }
  let ticks = 0;
  for (const member of tree) ticks += stats.get(member)?.ticks ?? 0;
  return ticks / CLOCK_TICKS_PER_SECOND;
}
