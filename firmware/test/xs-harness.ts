// Runs a small entry module of our own in the real XS engine against the compiled firmware modules
// and simulated peripherals: the way to exercise one firmware module without the whole app.

import { RealTimeClock } from "../sim/clock.ts";
import { loadFirmwareImage } from "../sim/firmware-image.ts";
import type { I2cBus } from "../sim/i2c-bus.ts";
import { I2cPort } from "../sim/i2c-bus.ts";
import { type HostPort, type MachineModule, XsMachine } from "../sim/xs-machine.ts";
import { type CapturedLog, captureLogs } from "./log-capture.ts";

/** Source an entry module can start with: `result({...})` logs one record the test reads back. */
export const RESULT_PRELUDE = `const result = (fields) => trace(JSON.stringify({ level: "info", msg: "result", ...fields }) + "\\n");`;

export interface XsRun {
  machine: XsMachine;
  logs: CapturedLog[];
  results(): Record<string, unknown>[];
}

/** Boots entrySource as the entry module, with the given I2C buses, further peripherals and compute budget. */
export async function runInXs(
  entrySource: string,
  peripherals: { buses?: I2cBus[]; ports?: Record<string, HostPort>; meteringLimit?: number } = {},
): Promise<XsRun> {
  const image = loadFirmwareImage();
  const modules = new Map<string, MachineModule>(image.modules);
  modules.set("test/entry", { source: entrySource, host: false });
  const { logger, entries } = captureLogs();
  const machine = new XsMachine({
    name: "xs-test",
    clock: new RealTimeClock(),
    logger,
    runtimeFile: image.runtimeFile,
    modules,
    entry: "test/entry",
    ports: { i2c: new I2cPort(peripherals.buses ?? []), ...peripherals.ports },
    meteringLimit: peripherals.meteringLimit,
  });
  await machine.start();
  return {
    machine,
    logs: entries,
    results: () =>
      entries
        .filter((entry) => entry.msg === "result")
        .map(({ fields: { device: _device, deviceTs: _deviceTs, ...rest } }) => rest),
  };
}
