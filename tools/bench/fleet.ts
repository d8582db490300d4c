// Fleet benchmarks, each one command, the platform and the load tool in the same run but in separate
// processes, so the CPU each takes is measured apart (the generator must not be the limit):
//   npm run bench -w tools -- fleet      FLEET_DEVICES=1000 FLEET_DURATION_S=600 FLEET_BATCH=5 FLEET_INTERVAL_MS=5000
//   npm run bench -w tools -- knee       KNEE_SIZES=500,1000,1500,2000,3000 KNEE_DURATION_S=180 (same rate)
//   npm run bench -w tools -- backends   BACKENDS=sqlite,postgresql: fleet load, ingest and device-list
//                                        benchmarks on each embedded backend, one after the other
// FERRETDB_BACKEND=sqlite|postgresql chooses the store for `fleet` and `knee`. Every figure is printed
// with the machine's load average.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DEFAULT_EMBEDDED_BACKEND, EMBEDDED_BACKENDS, type EmbeddedBackend } from "@kestrel/cloud";
import { printReport } from "../src/fleet/cli.ts";
import { type FleetReport, runFleet } from "../src/fleet/fleet.ts";

const ROOT = join(import.meta.dirname, "..", "..");
/** Linux's USER_HZ: /proc's CPU times are in these. */
const CLOCK_TICKS = 100;

const number = (name: string, fallback: number) => Number(process.env[name] || fallback);
const write = (line: string) => process.stdout.write(`${line}\n`);
const load = () =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");

interface PlatformInfo {
  cloudUrl: string;
  mqttUrl: string;
  ca: string;
  admin: { email: string; password: string };
  databasePid: number;
}

interface PlatformProcess {
  info: PlatformInfo;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** tools/bench/platform-server.ts in its own process, on a fresh data dir. */
async function startPlatformProcess(backend: EmbeddedBackend): Promise<PlatformProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), "kestrel-bench-fleet-"));
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "platform-server.ts")], {
    cwd: ROOT,
    env: { ...process.env, DATA_DIR: dataDir, FERRETDB_BACKEND: backend },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [line] = (await once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), "line")) as [string];
  return {
    info: JSON.parse(line) as PlatformInfo,
    child,
    stop: async () => {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * CPU seconds used so far by each process named, with its descendants (PostgreSQL's processes under
 * FerretDB) except those named separately (the platform under this benchmark's own process).
 */
async function cpuSeconds(roots: Record<string, number>): Promise<Record<string, number>> {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    stats.set(Number(entry), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
  }
  const named = new Set(Object.values(roots));
  const seconds: Record<string, number> = {};
  for (const [name, root] of Object.entries(roots)) {
    let ticks = 0;
    for (const [pid, stat] of stats) {
      // The nearest named process above (or at) pid owns its time.
      let at: number | undefined = pid;
      while (at && at > 1 && !named.has(at)) at = stats.get(at)?.ppid;
      if (at === root) ticks += stat.ticks;
    }
    seconds[name] = ticks / CLOCK_TICKS;
  }
  return seconds;
}

interface FleetRunResult {
  report: FleetReport;
  /** Percent of one core each process took while the fleet ran (publishing and draining). */
  cpu: Record<string, number>;
}

async function fleetRun(backend: EmbeddedBackend, devices: number, durationS: number): Promise<FleetRunResult> {
  const platform = await startPlatformProcess(backend);
  try {
    const roots = {
      "platform (cloud + gateway)": platform.child.pid as number,
      [backend === "postgresql" ? "FerretDB + PostgreSQL" : "FerretDB"]: platform.info.databasePid,
      "load tool": process.pid,
    };
    const before = await cpuSeconds(roots);
    const started = performance.now();
    const report = await runFleet({
      cloudUrl: platform.info.cloudUrl,
      mqttUrl: platform.info.mqttUrl,
      ca: platform.info.ca,
      admin: platform.info.admin,
      devices,
      samplesPerBatch: number("FLEET_BATCH", 5),
      intervalMs: number("FLEET_INTERVAL_MS", 5_000),
      durationMs: durationS * 1000,
      idPrefix: "fleet",
      connectPerSecond: number("FLEET_CONNECT_RATE", 100),
      settleTimeoutMs: number("FLEET_SETTLE_S", 600) * 1000,
      log: (line) => process.stderr.write(`fleet: ${line} (load ${load()})\n`),
    });
    const wall = (performance.now() - started) / 1000;
    const after = await cpuSeconds(roots);
    const cpu = Object.fromEntries(
      Object.keys(roots).map((name) => [name, (((after[name] ?? 0) - (before[name] ?? 0)) / wall) * 100]),
    );
    return { report, cpu };
  } finally {
    await platform.stop();
  }
}

function printRun(title: string, { report, cpu }: FleetRunResult): void {
  write(`\n${title}`);
  printReport(report, write);
  for (const [name, percent] of Object.entries(cpu)) write(`cpu ${name.padEnd(27)} ${percent.toFixed(0)}% of a core`);
}

function backendFromEnv(): EmbeddedBackend {
  const raw = process.env.FERRETDB_BACKEND || DEFAULT_EMBEDDED_BACKEND;
  const backend = EMBEDDED_BACKENDS.find((name) => name === raw);
  if (!backend) throw new Error(`FERRETDB_BACKEND must be one of ${EMBEDDED_BACKENDS.join(", ")}`);
  return backend;
}

export async function fleetBenchmark(): Promise<void> {
  const backend = backendFromEnv();
  const devices = number("FLEET_DEVICES", 1_000);
  const durationS = number("FLEET_DURATION_S", 600);
  write(`fleet load on FerretDB/${backend}: ${devices} devices, load average at start ${load()}`);
  const result = await fleetRun(backend, devices, durationS);
  printRun(`${devices} devices for ${durationS} s on FerretDB/${backend}`, result);
  if (result.report.missing > 0 || result.report.duplicated > 0) process.exitCode = 1;
}

/**
 * Whether apply lag stayed bounded: nothing lost or doubled, the last third's p99 not past twice the
 * first third's (plus 5 s of slack for a short run's noise) nor past 30 s, and the backlog drained
 * within a minute of the last publish.
 */
function bounded(report: FleetReport): boolean {
  const [first, last] = report.applyLagThirds;
  return (
    report.missing === 0 &&
    report.duplicated === 0 &&
    last.p99 <= 2 * first.p99 + 5_000 &&
    last.p99 <= 30_000 &&
    report.drainSeconds <= 60
  );
}

export async function kneeBenchmark(): Promise<void> {
  const backend = backendFromEnv();
  const sizes = (process.env.KNEE_SIZES || "500,1000,1500,2000,3000").split(",").map(Number);
  const durationS = number("KNEE_DURATION_S", 180);
  write(`knee on FerretDB/${backend}: ${sizes.join(", ")} devices, ${durationS} s each, load average ${load()}`);
  const rows: string[] = [];
  for (const devices of sizes) {
    const result = await fleetRun(backend, devices, durationS);
    printRun(`${devices} devices`, result);
    const { report } = result;
    const ok = bounded(report);
    rows.push(
      `| ${devices} | ${report.ackedPerSecond.toFixed(0)} | ${report.applyLag.p50.toFixed(0)} | ${report.applyLag.p99.toFixed(0)} | ` +
        `${report.applyLagThirds[0].p99.toFixed(0)} → ${report.applyLagThirds[1].p99.toFixed(0)} | ${report.drainSeconds.toFixed(0)} | ` +
        `${report.missing}/${report.duplicated} | ${report.api.deviceList.p99.toFixed(0)} | ${ok ? "bounded" : "**not bounded**"} | ${load()} |`,
    );
    if (!ok) break;
  }
  write(
    "\n| devices | samples/s acked | apply lag p50 ms | p99 ms | p99 first → last third | drain s | lost/doubled | list p99 ms | | load |",
  );
  write("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
  for (const row of rows) write(row);
}

/** A cloud benchmark (cloud/bench) in its own process, its output passed through. */
async function cloudBenchmark(name: string, env: Record<string, string>): Promise<void> {
  const child = spawn("npm", ["run", "--silent", "bench", "-w", "cloud", "--", name], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`cloud benchmark ${name} failed (exit ${code})`);
}

export async function backendsBenchmark(): Promise<void> {
  const backends = (process.env.BACKENDS || EMBEDDED_BACKENDS.join(",")).split(",") as EmbeddedBackend[];
  const devices = number("BACKENDS_FLEET_DEVICES", 500);
  const durationS = number("BACKENDS_FLEET_DURATION_S", 120);
  for (const backend of backends) {
    write(`\n===== FerretDB on ${backend} (load average ${load()}) =====`);
    printRun(`fleet load: ${devices} devices for ${durationS} s`, await fleetRun(backend, devices, durationS));
    write(`\ningest, batches of 5 (load average ${load()})`);
    await cloudBenchmark("ingest", {
      FERRETDB_BACKEND: backend,
      BENCH_SAMPLES: process.env.BACKENDS_INGEST_SAMPLES || "500",
      BENCH_SAMPLES_PER_MESSAGE: "5",
    });
    write(`\ndevice list, 10,000 devices (load average ${load()})`);
    await cloudBenchmark("devices", {
      FERRETDB_BACKEND: backend,
      DEVICES: process.env.BACKENDS_LIST_DEVICES || "10000",
      ROUNDS: "20",
      BUDGET_S: "15",
    });
  }
  write(`\nload average at the end ${load()}`);
}
