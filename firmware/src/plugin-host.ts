// kestrel/plugin-host: one plugin loaded into its own wasm3 instance, and the host API it imports
// (module "kestrel"; the SDK in plugins/assembly/sdk wraps it). A plugin reaches nothing else: the
// sensor values of the current sample by index, its own declared metrics, its own config numbers,
// the sample's time and a rate-limited log.

import {
  type LogLevel,
  PLUGIN_HOST_API,
  PLUGIN_HOST_MODULE,
  PLUGIN_LIMITS,
  type PluginHostFunction,
} from "@kestrel/wire";
import type Log from "kestrel/log";
import WasmInstance, { BUDGET_TRAP, type WasmImport } from "kestrel/wasm-instance";

/** Per plugin: one 64 KiB page of linear memory, 8 KiB of wasm3 stack, a budget per call. */
export const PLUGIN_RUN_LIMITS = Object.freeze({
  memoryPages: PLUGIN_LIMITS.memoryPages,
  stackBytes: 8 * 1024,
  /** Start function and init(): name lookups and set-up. */
  initFuel: 200_000,
  /**
   * One on_sample call, in units of a loop iteration, a call or at most 32 straight-line instructions
   * (native/wasm/wasm-meter.c): at most ~1.6 million instructions, which bounds the call's time.
   */
  sampleFuel: 50_000,
  /** Log lines a plugin may write in a burst; one more is allowed per sample. */
  logBurst: 5,
});

const LOG_LEVELS: readonly LogLevel[] = Object.freeze(["debug", "info", "warn", "error"]);

/** Why a plugin was refused or stopped: a stable code and the engine's message. */
export class PluginError extends Error {
  readonly code: "budget" | "trap" | "refused" | "init";

  constructor(code: PluginError["code"], message: string) {
    super(message);
    this.code = code;
  }

  /** A failure of the engine (a trap, the budget, a refused module) with its code. */
  static from(error: unknown, refusedCode: PluginError["code"] = "refused"): PluginError {
    if (error instanceof PluginError) return error;
    // XS prefixes an error a host function throws with the function's name ("@xs_…: ").
    const message = (error instanceof Error ? error.message : String(error)).replace(/^@\w+: /, "");
    if (message === BUDGET_TRAP) return new PluginError("budget", message);
    if (message.startsWith("[trap]")) return new PluginError("trap", message);
    return new PluginError(refusedCode, message);
  }
}

/** The sample a plugin runs on: the sensors' metric names and values, and where its metrics go. */
export interface PluginSample {
  names: readonly string[];
  values: Float64Array;
  now: number;
  /** The row the sample is batched from; the plugin's metrics start at `offset`. */
  row: Float64Array;
  offset: number;
}

/** What the device reports per plugin: on_sample calls, those that failed, the most budget one used. */
export interface PluginCounters {
  calls: number;
  errors: number;
  fuel: number;
}

export interface PluginSpec {
  name: string;
  version: string;
  metrics: readonly string[];
  config: Readonly<Record<string, number>>;
}

export default class PluginRuntime {
  readonly spec: PluginSpec;
  readonly #instance: WasmInstance;
  #sample: PluginSample | undefined;
  #names: readonly string[];
  #logTokens: number = PLUGIN_RUN_LIMITS.logBurst;
  readonly #counters: PluginCounters;
  readonly #log: Log;

  /**
   * Loads the module and runs its start function and init(); throws a PluginError when the module
   * is refused (malformed, over a limit, an import the host does not offer, an entry point
   * missing), traps, runs out of budget, or init() reports a failure.
   */
  constructor(
    spec: PluginSpec,
    bytes: ArrayBuffer,
    sensorNames: readonly string[],
    counters: PluginCounters,
    log: Log,
  ) {
    this.spec = spec;
    this.#counters = counters;
    this.#log = log;
    this.#names = sensorNames;
    let instance: WasmInstance;
    try {
      instance = new WasmInstance(bytes, { ...PLUGIN_RUN_LIMITS, fuel: PLUGIN_RUN_LIMITS.initFuel }, this.#imports());
    } catch (error) {
      throw PluginError.from(error);
    }
    this.#instance = instance;
    try {
      for (const entry of ["init", "on_sample"])
        if (!instance.hasExport(entry)) throw new PluginError("refused", `the module does not export ${entry}`);
      const status = instance.call("init", PLUGIN_RUN_LIMITS.initFuel);
      if (status !== 0) throw new PluginError("init", `init() returned ${status}`);
    } catch (error) {
      instance.close();
      throw PluginError.from(error, "init");
    }
  }

  /** Runs on_sample once; throws a PluginError when the call traps or runs out of budget. */
  run(sample: PluginSample): void {
    this.#sample = sample;
    if (this.#logTokens < PLUGIN_RUN_LIMITS.logBurst) this.#logTokens++;
    const counters = this.#counters;
    counters.calls++;
    try {
      this.#instance.call("on_sample", PLUGIN_RUN_LIMITS.sampleFuel);
    } catch (error) {
      counters.errors++;
      throw PluginError.from(error);
    } finally {
      this.#sample = undefined;
      const used = this.#instance.fuelUsed;
      if (used > counters.fuel) counters.fuel = used;
    }
  }

  get memoryBytes(): number {
    return this.#instance.memoryBytes;
  }

  close(): void {
    this.#instance.close();
  }

  /** The host API (its signatures are the wire's PLUGIN_HOST_API), as wasm3 links it: "module.field" → function. */
  #imports(): Record<string, WasmImport> {
    const { metrics, config, name } = this.spec;
    const text = (offset: number, length: number): string => this.#instance.string(offset, length);
    const functions: Record<PluginHostFunction, WasmImport["fn"]> = {
      sensor: (offset, length) => this.#names.indexOf(text(offset, length)),
      value: (index) => {
        const values = this.#sample?.values;
        return values !== undefined && index >= 0 && index < this.#names.length
          ? (values[index] as number)
          : Number.NaN;
      },
      metric: (offset, length) => metrics.indexOf(text(offset, length)),
      emit: (index, value) => {
        const sample = this.#sample;
        // A non-finite value cannot travel in a batch: it counts as no value this sample.
        if (sample && index >= 0 && index < metrics.length && Number.isFinite(value))
          sample.row[sample.offset + index] = value;
        return undefined;
      },
      config: (offset, length) => config[text(offset, length)] ?? Number.NaN,
      log: (level, offset, length) => {
        if (this.#logTokens <= 0) return undefined;
        this.#logTokens--;
        this.#log.write(LOG_LEVELS[level] ?? "info", text(offset, length), { plugin: name }, "plugin");
        return undefined;
      },
      now: () => this.#sample?.now ?? Date.now(),
    };
    const imports: Record<string, WasmImport> = {};
    for (const [field, fn] of Object.entries(functions))
      imports[`${PLUGIN_HOST_MODULE}.${field}`] = { signature: PLUGIN_HOST_API[field as PluginHostFunction], fn };
    return imports;
  }
}
