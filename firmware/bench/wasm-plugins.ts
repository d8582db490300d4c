// The WebAssembly plugin host's costs, each against a baseline measured in the same run:
//   npm run bench:plugins -w firmware          (ROUNDS=5 by default; the median is printed)
// - call overhead: XS → wasm (an empty export) and XS → wasm → host import (the host's now(), a
//   JavaScript function), per call, against an XS → JavaScript function call, in the simulator's
//   worker (wasm3 through the native binding, the module metered); V8 (Node's WebAssembly) on the
//   same .wasm alongside;
// - a compute kernel: a bitwise CRC-32 of 4 KiB in wasm3 against the same .wasm in V8, and against
//   the same loop written in JavaScript in XS;
// - memory per loaded plugin: XS heap slots and native (malloc) bytes, the three examples loaded.
// Timing inside XS is a whole crank of N repetitions timed from Node (the crank's fixed cost, an
// empty crank, is subtracted); the load generator is the loop itself, nothing else is on the path.

import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { ReferencePlugin } from "../plugins/reference-host.ts";
import { RealTimeClock } from "../sim/clock.ts";
import { loadFirmwareImage } from "../sim/firmware-image.ts";
import { silentLogger } from "../sim/logger.ts";
import { type HostPort, type MachineModule, XsMachine } from "../sim/xs-machine.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const CALLS = 100_000;
const CRC_RUNS = 20;
const PLUGIN_DIR = join(import.meta.dirname, "..", "build", "plugins");
const SLOT_BYTES_HOST = 32;
const EXAMPLES = { smoothing: ["temperature_avg"], dewpoint: ["dew_point"], threshold: ["alarm"] } as const;

const bytesOf = (name: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(readFileSync(join(PLUGIN_DIR, `${name}.wasm`)));

/** The bench's side in XS: a host module (it may listen for the parent's events) over the firmware's modules. */
const ENTRY = `
import host from "kestrel-sim:host";
import WasmInstance from "kestrel/wasm-instance";
import PluginRuntime from "kestrel/plugin-host";
import Log from "kestrel/log";

const log = new Log();
const spin = new PluginRuntime(
  { name: "spin", version: "1", metrics: [], config: {} },
  new Uint8Array(${JSON.stringify(Array.from(bytesOf("spin")))}).buffer,
  [],
  { calls: 0, errors: 0, fuel: 0 },
  log,
);
const sample = { names: [], values: new Float64Array(0), now: 0, row: new Float64Array(0), offset: 0 };
const kernels = new Uint8Array(${JSON.stringify(Array.from(bytesOf("kernels")))}).buffer;
const examples = ${JSON.stringify(Object.fromEntries(Object.keys(EXAMPLES).map((name) => [name, Array.from(bytesOf(name))])))};
const metrics = ${JSON.stringify(EXAMPLES)};
const FUEL = 2_000_000_000;
const imports = {
  "kestrel.now": { signature: "F()", fn: () => 1 },
  "kestrel.log": { signature: "v(iii)", fn: () => undefined },
};
const instance = new WasmInstance(kernels, { memoryPages: 1, stackBytes: 8192, fuel: 1000000 }, imports);
instance.call("init", 1000000);
const loaded = [];
function jsFunction(x) { return x + 1; }
function crcJs(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i];
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}
const buffer = new Uint8Array(4096);
let x = 1;
for (let i = 0; i < buffer.length; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; buffer[i] = (x >>> 16) & 255; }
const variants = {
  idle: () => 0,
  js: (n) => { let s = 0; for (let i = 0; i < n; i++) s = jsFunction(s); return s; },
  wasm: (n) => { for (let i = 0; i < n; i++) instance.call("empty", FUEL); return n; },
  import: (n) => instance.call("host_calls", FUEL, n),
  crcWasm: (n) => { let c = 0; for (let i = 0; i < n; i++) c = instance.call("crc32", FUEL) >>> 0; return c; },
  runaway: (n) => {
    let stopped = 0;
    for (let i = 0; i < n; i++) {
      try { spin.run(sample); } catch (error) { if (error.code === "budget") stopped++; }
    }
    return stopped;
  },
  crcJs: (n) => { let c = 0; for (let i = 0; i < n; i++) c = crcJs(buffer); return c; },
  load: () => {
    for (const [name, bytes] of Object.entries(examples)) {
      const spec = { name, version: "1", metrics: metrics[name], config: {} };
      loaded.push(new PluginRuntime(spec, new Uint8Array(bytes).buffer, ["temperature", "humidity"], { calls: 0, errors: 0, fuel: 0 }, log));
    }
    return loaded.length;
  },
};
export default function main() {
  host.listen("bench", 0, ({ variant, n }) => host.call("bench.result", { variant, value: variants[variant](n) }));
}
`;

interface XsRun {
  machine: XsMachine;
  /** The last value each variant returned. */
  results: Map<string, unknown>;
}

async function startBenchMachine(): Promise<XsRun> {
  const image = loadFirmwareImage();
  const modules = new Map<string, MachineModule>(image.modules);
  modules.set("mc/config", { source: `export default Object.freeze(${JSON.stringify(image.config)});`, host: false });
  modules.set("bench-entry", { source: ENTRY, host: true });
  const results = new Map<string, unknown>();
  const bench: HostPort = {
    handle(op, args) {
      if (op === "result") results.set(String(args.variant), args.value);
      return undefined;
    },
  };
  const machine = new XsMachine({
    name: "bench-plugins",
    clock: new RealTimeClock(),
    logger: silentLogger,
    runtimeFile: image.runtimeFile,
    modules,
    entry: "bench-entry",
    ports: { bench },
    meteringLimit: 2_000_000_000,
  });
  await machine.start();
  return { machine, results };
}

/** Wall time of one crank running `variant` n times, ms. */
async function crank(run: XsRun, variant: string, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  await run.machine.post("bench", 0, { variant, n });
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

async function xsPerCall(run: XsRun, variant: string, n: number): Promise<number> {
  const idle: number[] = [];
  const busy: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    idle.push(await crank(run, "idle", 0));
    busy.push(await crank(run, variant, n));
  }
  return ((median(busy) - median(idle)) * 1e6) / n; // ns
}

function v8PerCall(fn: () => void, n: number): number {
  const times: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    times.push(Number(process.hrtime.bigint() - start) / n);
  }
  return median(times);
}

const load = (): string =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");

const loadBefore = load();
const run = await startBenchMachine();
try {
  // Call overheads.
  const xsJs = await xsPerCall(run, "js", CALLS);
  const xsWasm = await xsPerCall(run, "wasm", CALLS);
  const xsImport = await xsPerCall(run, "import", CALLS);
  if (run.results.get("import") !== CALLS)
    throw new Error(`host_calls(${CALLS}) made ${run.results.get("import")} calls`);
  const reference = new ReferencePlugin(bytesOf("kernels"), { sensorNames: [], metrics: [] });
  reference.init();
  const empty = reference.exported<() => void>("empty");
  const hostCalls = reference.exported<(n: number) => number>("host_calls");
  const v8Wasm = v8PerCall(empty, CALLS * 10);
  const v8Import = v8PerCall(() => hostCalls(CALLS), 1) / CALLS;

  // Compute kernel: the same CRC-32 everywhere, checked against zlib's.
  const crcWasm = await xsPerCall(run, "crcWasm", CRC_RUNS);
  const crcXs = await xsPerCall(run, "crcJs", CRC_RUNS);
  const v8Crc = reference.exported<() => number>("crc32");
  const crcV8 = v8PerCall(v8Crc, CRC_RUNS * 50);
  const buffer = Buffer.alloc(4096);
  let x = 1;
  for (let i = 0; i < buffer.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    buffer[i] = (x >>> 16) & 255;
  }
  const expected = crc32(buffer);
  const [wasm3, xs, v8] = [run.results.get("crcWasm"), run.results.get("crcJs"), v8Crc() >>> 0];
  if (wasm3 !== expected || xs !== expected || v8 !== expected)
    throw new Error(`CRC-32 mismatch: wasm3 ${wasm3}, XS ${xs}, V8 ${v8}, zlib ${expected}`);

  // A plugin that never returns, stopped by its budget (PLUGIN_RUN_LIMITS.sampleFuel).
  const runaway = await xsPerCall(run, "runaway", 10);
  if (run.results.get("runaway") !== 10) throw new Error("the runaway plugin was not stopped by its budget");

  // Memory per loaded plugin.
  const before = await run.machine.collect();
  await crank(run, "load", 0);
  const after = await run.machine.collect();
  const plugins = Object.keys(EXAMPLES).length;
  const slotsPerPlugin = (after.heapSlots - before.heapSlots) / plugins;
  const nativePerPlugin = (after.nativeBytes - before.nativeBytes - (after.allocated - before.allocated)) / plugins;

  const us = (ns: number): string => (ns / 1000).toFixed(2);
  const rows = [
    ["XS → JS function call (baseline)", `${xsJs.toFixed(0)} ns`, "1.0x"],
    ["XS → wasm3 empty export", `${xsWasm.toFixed(0)} ns`, `${(xsWasm / xsJs).toFixed(1)}x`],
    ["wasm3 → host import (JS), per call", `${xsImport.toFixed(0)} ns`, `${(xsImport / xsJs).toFixed(1)}x`],
    ["V8: JS → wasm empty export", `${v8Wasm.toFixed(1)} ns`, ""],
    ["V8: wasm → JS import, per call", `${v8Import.toFixed(1)} ns`, ""],
    ["CRC-32 of 4 KiB, V8 (baseline)", `${us(crcV8)} µs`, "1.0x"],
    ["CRC-32 of 4 KiB, wasm3 in XS (metered)", `${us(crcWasm)} µs`, `${(crcWasm / crcV8).toFixed(1)}x`],
    ["CRC-32 of 4 KiB, JavaScript in XS", `${us(crcXs)} µs`, `${(crcXs / crcV8).toFixed(1)}x`],
    [
      "infinite loop stopped by its budget",
      `${(runaway / 1e6).toFixed(2)} ms`,
      "one on_sample call spending its whole budget",
    ],
    [
      "XS heap per loaded plugin",
      `${slotsPerPlugin.toFixed(0)} slots`,
      `${((slotsPerPlugin * 16) / 1024).toFixed(1)} KiB at 16 B/slot (ESP32); ${((slotsPerPlugin * SLOT_BYTES_HOST) / 1024).toFixed(1)} KiB here`,
    ],
    [
      "native (malloc) per loaded plugin",
      `${(nativePerPlugin / 1024).toFixed(1)} KiB`,
      "wasm3 runtime, code pages, 64 KiB linear memory, 8 KiB stack (64-bit host)",
    ],
  ];
  const width = Math.max(...rows.map((row) => (row[0] as string).length));
  process.stdout.write(`plugin host (median of ${ROUNDS}; load average before ${loadBefore}, after ${load()})\n`);
  for (const [what, value, ratio] of rows)
    process.stdout.write(`  ${(what as string).padEnd(width)}  ${(value as string).padStart(14)}  ${ratio}\n`);
} finally {
  await run.machine.stop();
}
