// XS heap and compute of the firmware, from the engine's own meters (xsnap's currentHeapCount after
// a full GC, and computrons per crank), each against a baseline measured in the same run:
//   npm run bench -w firmware            (CYCLES=200 batch periods by default)
// Stages: an empty program on the simulator runtime (baseline), the firmware's preloaded modules
// and the platform modules imported (what the device keeps in flash: preloaded), the firmware
// booted, and the firmware after CYCLES sample-and-publish cycles against a real MQTT broker.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadFirmwareImage } from "../sim/firmware-image.ts";
import { type SimDevice, startSimDevice, VirtualClock } from "../sim/index.ts";
import { silentLogger } from "../sim/logger.ts";
import { type HostPort, type MachineModule, XsMachine, type XsMeters } from "../sim/xs-machine.ts";
import { startBroker } from "../test/broker.ts";

const CYCLES = Number(process.env.CYCLES ?? 200);
const SLOT_BYTES_HOST = 32;
const SLOT_BYTES_ESP32 = 16;
const TARGET_BYTES = 64 * 1024;
const START = Date.UTC(2026, 0, 1);

const image = loadFirmwareImage();
const manifest = JSON.parse(readFileSync(image.manifestPath, "utf8")) as { preload?: string[] };

/** Any host call a module makes while it is only being imported gets an empty answer. */
const inertPorts = new Proxy({} as Record<string, HostPort>, { get: () => ({ handle: () => undefined }) });

/** Boots `entry` (its source given here) on the simulator runtime with the firmware's modules available. */
async function machineWith(entrySource: string, clock: VirtualClock): Promise<XsMachine> {
  const modules = new Map<string, MachineModule>(image.modules);
  modules.set("mc/config", { source: `export default Object.freeze(${JSON.stringify(image.config)});`, host: false });
  modules.set("bench-entry", { source: entrySource, host: false });
  const machine = new XsMachine({
    name: "bench",
    clock,
    logger: silentLogger,
    runtimeFile: image.runtimeFile,
    modules,
    entry: "bench-entry",
    ports: inertPorts,
  });
  await machine.start();
  return machine;
}

/** A bare program: one repeating timer that does nothing. Its tick is the unit of compute. */
const BARE = `import Timer from "timer"; export default function main() { Timer.repeat(() => {}, 1000); }`;

function importing(specifiers: readonly string[]): string {
  return `${specifiers.map((specifier) => `import ${JSON.stringify(specifier)};`).join("\n")}\nexport default function main() {}`;
}

interface Row {
  stage: string;
  slots: number;
  note: string;
}

const kib = (bytes: number): string => (bytes / 1024).toFixed(1);

async function main(): Promise<void> {
  const rows: Row[] = [];
  const clock = new VirtualClock({ start: START });

  const bare = await machineWith(BARE, clock);
  const baseline = await bare.collect();
  const ticksFrom = bare.meters().compute;
  const TICKS = 100;
  await clock.runUntil(START + TICKS * 1000 + 500);
  const computePerTick = (bare.meters().compute - ticksFrom) / TICKS;
  await bare.stop();
  rows.push({ stage: "baseline: runtime + bare timer program", slots: baseline.heapSlots, note: "not on device" });

  const platform = [...image.modules].filter(([, module]) => module.host).map(([specifier]) => specifier);
  const preload = manifest.preload ?? [];
  const preloaded = await machineWith(importing([...platform, ...preload]), new VirtualClock({ start: START }));
  const rom = await preloaded.collect();
  await preloaded.stop();
  rows.push({
    stage: "+ platform and preloaded modules imported",
    slots: rom.heapSlots,
    note: "flash (ROM) on device",
  });
  const everything = await machineWith(importing([...platform, "main"]), new VirtualClock({ start: START }));
  const allModules = await everything.collect();
  await everything.stop();
  rows.push({ stage: "+ every firmware module imported (main too)", slots: allModules.heapSlots, note: "" });

  // The tests' broker acks telemetry as the gateway does, so the firmware releases what it sent.
  const broker = await startBroker(new Map([["bench-1", "bench"]]));
  const stateDir = mkdtempSync(join(tmpdir(), "kestrel-bench-"));
  const deviceClock = new VirtualClock({ start: START });
  let device: SimDevice | undefined;
  try {
    device = await startSimDevice({
      deviceId: "bench-1",
      token: "bench",
      mqttUrl: broker.url,
      stateDir,
      seed: 1,
      clock: deviceClock,
    });
    await device.connected;
    const booted = await device.collect();
    rows.push({ stage: "firmware booted, connected", slots: booted.heapSlots, note: "" });
    const interval = Number(image.config.sampleIntervalMs);
    const batch = Number(image.config.samplesPerBatch);
    // Warm up one batch period, then measure CYCLES batch periods (each: samples, one publish).
    await deviceClock.runUntil(deviceClock.now() + interval * batch);
    const before: XsMeters = device.meters();
    await deviceClock.runUntil(deviceClock.now() + interval * batch * CYCLES);
    const after = device.meters();
    const steady = await device.collect();
    rows.push({ stage: `steady state after ${CYCLES} cycles`, slots: steady.heapSlots, note: "" });
    const computePerCycle = (after.compute - before.compute) / CYCLES;
    report(rows, { computePerTick, computePerCycle, batch, interval, allocated: steady.allocated });
  } finally {
    await device?.stop();
    await broker.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

function report(
  rows: Row[],
  figures: { computePerTick: number; computePerCycle: number; batch: number; interval: number; allocated: number },
): void {
  const [baseline, rom, allModules, booted, steady] = rows as [Row, Row, Row, Row, Row];
  const lines = [
    "| stage | slots (live, after GC) | vs baseline | KiB at 16 B/slot (ESP32) | |",
    "| --- | ---: | ---: | ---: | --- |",
    ...rows.map(
      (row) =>
        `| ${row.stage} | ${row.slots} | ${(row.slots / baseline.slots).toFixed(2)} | ${kib(row.slots * SLOT_BYTES_ESP32)} | ${row.note} |`,
    ),
  ];
  const ram = (row: Row): number => (row.slots - rom.slots) * SLOT_BYTES_ESP32;
  const ours = (row: Row): number => (row.slots - baseline.slots) * SLOT_BYTES_ESP32;
  lines.push(
    "",
    `firmware slots above the baseline: after boot ${booted.slots - baseline.slots} (${kib(ours(booted))} KiB at 16 B), ` +
      `steady ${steady.slots - baseline.slots} (${kib(ours(steady))} KiB)`,
    `RAM on the device (above the preloaded modules): after boot ${booted.slots - rom.slots} slots = ${kib(ram(booted))} KiB, ` +
      `steady ${steady.slots - rom.slots} slots = ${kib(ram(steady))} KiB; target ${kib(TARGET_BYTES)} KiB: ` +
      (ram(steady) <= TARGET_BYTES ? "met" : "NOT met"),
    `if main and every kestrel/* module were preloaded too: steady ${steady.slots - allModules.slots} slots = ` +
      `${kib((steady.slots - allModules.slots) * SLOT_BYTES_ESP32)} KiB of RAM`,
    `(host: ${SLOT_BYTES_HOST} B/slot; engine memory taken from the host at the end: ${kib(figures.allocated)} KiB incl. chunks)`,
    "",
    `compute: bare timer tick ${figures.computePerTick.toFixed(0)} computrons (baseline); ` +
      `one cycle (${figures.batch} samples at ${figures.interval} ms and one publish) ${figures.computePerCycle.toFixed(0)} ` +
      `= ${(figures.computePerCycle / figures.computePerTick).toFixed(1)}x a bare tick`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
