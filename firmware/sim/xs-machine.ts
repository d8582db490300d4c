// One simulated device CPU: an xsnap worker (the real XS engine) running the firmware's compiled
// modules. Host calls from XS are routed to simulated peripherals; a single command queue delivers
// timer ticks (driven by the SimClock) and device events to the firmware, one crank at a time.

import { readFileSync } from "node:fs";
import type { SimClock } from "./clock.ts";
import { type XsnapMeterUsage, XsnapWorker } from "./engine/xsnap-worker.ts";
import type { SimLogger } from "./logger.ts";

/** A simulated peripheral: handles the host calls named `<port>.<op>`. */
export interface HostPort {
  handle(op: string, args: Record<string, unknown>): unknown;
}

export type MachineModule = { file: string; host: boolean } | { source: string; host: boolean };

export interface XsMachineOptions {
  name: string;
  clock: SimClock;
  logger: SimLogger;
  /** Compiled sim/xs/boot.js. */
  runtimeFile: string;
  /** Module specifier → compiled source, for the firmware's compartment. */
  modules: ReadonlyMap<string, MachineModule>;
  /** The module booted first; its default export is called when it is a function. */
  entry: string;
  ports: Readonly<Record<string, HostPort>>;
  /** Computrons one crank may use before the worker is stopped (a runaway loop). */
  meteringLimit?: number;
  /** Called once the firmware has halted on its own (a crash, or a crank over the metering limit). */
  onHalt?: (reason: string) => void;
  /** Seeds the firmware's Math.random. */
  seed?: number;
  /** How far the device's wall clock is off the simulator's (a clock jump fault), ms. */
  wallOffset?: () => number;
}

export interface XsMeters {
  /**
   * XS heap slots in use after the last crank (32 bytes each on this host, 16 on an ESP32): live
   * ones plus garbage not yet collected, unless read through collect().
   */
  heapSlots: number;
  /** Computrons used by all cranks so far. */
  compute: number;
  /** Bytes the engine has taken from the host for its slot and chunk heaps (only grows). */
  allocated: number;
  /**
   * Bytes the worker's C heap holds (malloc): the engine's heaps plus what native modules (wasm3
   * runtimes, modules, linear memories) hold; as of the last collect(), 0 before one.
   */
  nativeBytes: number;
}

type Command =
  | { t: "boot"; entry: string; seed: number }
  | { t: "tick" }
  | { t: "event"; channel: string; id: number; data: Record<string, unknown> };

interface CommandReply {
  next: number | null;
  /** The device's time at the end of the crank: later than sent when it ran ahead. */
  now?: number;
  fatal?: string;
}

const RUNTIME_SPECIFIER = "kestrel-sim/boot";
const DEFAULT_METERING_LIMIT = 100_000_000;
const LOG_LEVELS = new Set(["debug", "info", "warn", "error"]);

// Evaluated once in the worker's start compartment: loads the runtime module through the host.
const BOOTSTRAP = `(() => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const load = (specifier) => {
    const request = encoder.encode(JSON.stringify({ op: "module.load", specifier }));
    const reply = JSON.parse(decoder.decode(issueCommand(request.buffer)));
    if (!reply.ok) throw Error(reply.error);
    return { source: new ModuleSource(reply.value.source) };
  };
  const runtime = new Compartment({
    __options__: true,
    // kestrelNatives: our native modules' C functions, in the worker tools/scripts/kestrel-worker.sh builds.
    globals: { issueCommand, TextEncoder, TextDecoder, kestrelNatives: globalThis.kestrelNatives },
    resolveHook: (specifier) => specifier,
    loadNowHook: load,
  });
  globalThis.handleCommand = runtime.importNow(${JSON.stringify(RUNTIME_SPECIFIER)}).handleCommand;
})();`;

// A full GC, then the C heap's size from the worker's own meter (meter.native below).
const COLLECT = `gc();
if (globalThis.kestrelNatives) {
  const bytes = globalThis.kestrelNatives.mallocBytes();
  issueCommand(new TextEncoder().encode(JSON.stringify({ op: "meter.native", bytes })).buffer);
}`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class XsMachine {
  readonly name: string;
  readonly #options: XsMachineOptions;
  readonly #sources = new Map<string, string>();
  readonly #queue: { command: Command; done?: () => void }[] = [];
  #worker: XsnapWorker | undefined;
  #booted = false;
  #pumping = false;
  #idle: Promise<void> = Promise.resolve();
  #cancelAlarm: (() => void) | undefined;
  #heapSlots = 0;
  #compute = 0;
  #allocated = 0;
  #nativeBytes = 0;
  #stopped = false;
  #haltReason: string | undefined;
  /** Holds the clock while the engine works: virtual time must not pass during a crank. */
  #release: (() => void) | undefined;

  constructor(options: XsMachineOptions) {
    this.name = options.name;
    this.#options = options;
  }

  /** Starts the worker and runs the entry module; rejects when the firmware fails to boot. */
  async start(): Promise<void> {
    const options = this.#options;
    // Booting takes no device time, however long the worker takes to start.
    this.#holdClock();
    let worker: XsnapWorker;
    try {
      worker = await XsnapWorker.start({
        name: options.name,
        // Its own process group, so a terminal's Ctrl-C stops the simulator in order rather than
        // killing every device's engine at once; the worker exits when its pipes to us close.
        detached: true,
        handleCommand: (request) => this.#onHostCall(request),
        meteringLimit: options.meteringLimit ?? DEFAULT_METERING_LIMIT,
        stdout: "ignore",
        stderr: "inherit",
      });
    } catch (error) {
      this.#releaseClock();
      throw error;
    }
    this.#worker = worker;
    if (this.#stopped) {
      this.#releaseClock();
      await worker.terminate();
      return;
    }
    try {
      this.#meter((await worker.evaluate(BOOTSTRAP)).meterUsage);
      const reply = await this.#send({ t: "boot", entry: options.entry, seed: options.seed ?? 0 });
      if (reply.fatal !== undefined) throw new Error(`${options.name}: firmware failed to boot: ${reply.fatal}`);
    } catch (error) {
      // Killed while booting (power loss): not a firmware failure, and whoever killed it boots anew.
      if (this.#stopped) return;
      this.#stopped = true;
      this.#disarm();
      this.#flushQueue();
      await worker.terminate();
      throw error;
    } finally {
      this.#releaseClock();
    }
    // Events that arrived while booting waited for the firmware to register its listeners.
    this.#booted = true;
    if (this.#queue.length > 0) this.#idle = this.#pump();
  }

  /**
   * Delivers an event to the listener the firmware registered for (channel, id); resolves once the
   * firmware has handled it (or at once if the machine no longer runs).
   */
  post(channel: string, id: number, data: Record<string, unknown>): Promise<void> {
    return new Promise((resolve) => this.#enqueue({ t: "event", channel, id, data }, resolve));
  }

  meters(): XsMeters {
    return {
      heapSlots: this.#heapSlots,
      compute: this.#compute,
      allocated: this.#allocated,
      nativeBytes: this.#nativeBytes,
    };
  }

  /** Runs a full garbage collection in the engine: heapSlots then counts live slots only. */
  async collect(): Promise<XsMeters> {
    const worker = this.#worker;
    if (worker && !this.#stopped && this.#haltReason === undefined) {
      const usage = (await worker.evaluate(COLLECT)).meterUsage;
      if (usage.currentHeapCount !== null) this.#heapSlots = usage.currentHeapCount;
      if (usage.allocate !== null) this.#allocated = usage.allocate;
    }
    return this.meters();
  }

  /** Why the machine stopped running firmware on its own (a crash), if it did. */
  get haltReason(): string | undefined {
    return this.#haltReason;
  }

  /**
   * Power loss: the engine dies where it stands, in the middle of a crank or a host call, without
   * waiting for work in progress (a host call may be waiting for this very kill).
   */
  async kill(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#disarm();
    this.#flushQueue();
    await this.#worker?.terminate();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#disarm();
    this.#flushQueue();
    await this.#idle;
    await this.#worker?.close().catch(() => undefined);
  }

  #enqueue(command: Command, done?: () => void): void {
    if (this.#stopped || this.#haltReason !== undefined) {
      done?.();
      return;
    }
    this.#queue.push({ command, done });
    if (!this.#pumping && this.#booted) this.#idle = this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    this.#holdClock();
    try {
      for (let entry = this.#queue.shift(); entry; entry = this.#queue.shift()) {
        try {
          if (this.#stopped || this.#haltReason !== undefined) continue;
          const reply = await this.#send(entry.command);
          if (reply.fatal !== undefined) await this.#halt(reply.fatal);
        } catch (error) {
          if (!this.#stopped) await this.#halt(messageOf(error));
        } finally {
          entry.done?.();
        }
      }
    } finally {
      this.#pumping = false;
      this.#releaseClock();
    }
  }

  #holdClock(): void {
    this.#release ??= this.#options.clock.hold?.();
  }

  #releaseClock(): void {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  async #send(command: Command): Promise<CommandReply> {
    const worker = this.#worker as XsnapWorker;
    const { clock, wallOffset } = this.#options;
    const now = clock.now();
    // Nothing else due at all (a lone device, nobody waiting): no run-ahead, or it would never stop.
    const until = clock.horizon?.() ?? now;
    const result = await worker.issueStringCommand(
      JSON.stringify({
        ...command,
        now,
        wall: wallOffset?.() ?? 0,
        until: Number.isFinite(until) ? until : now,
      }),
    );
    this.#meter(result.meterUsage);
    const reply = JSON.parse(result.reply) as CommandReply;
    if (reply.now !== undefined) clock.advanceTo?.(reply.now);
    if (reply.fatal === undefined) this.#arm(reply.next);
    return reply;
  }

  async #halt(reason: string): Promise<void> {
    this.#haltReason = reason;
    this.#disarm();
    this.#flushQueue();
    this.#options.logger.error({ device: this.name, reason }, "simulated device halted");
    await this.#worker?.terminate();
    this.#options.onHalt?.(reason);
  }

  #flushQueue(): void {
    for (const entry of this.#queue.splice(0)) entry.done?.();
  }

  #arm(next: number | null): void {
    this.#disarm();
    if (next === null || this.#stopped) return;
    this.#cancelAlarm = this.#options.clock.setAlarm(next, () => {
      this.#cancelAlarm = undefined;
      this.#enqueue({ t: "tick" });
    });
  }

  #disarm(): void {
    this.#cancelAlarm?.();
    this.#cancelAlarm = undefined;
  }

  #meter(usage: XsnapMeterUsage): void {
    if (usage.currentHeapCount !== null) this.#heapSlots = usage.currentHeapCount;
    if (usage.compute !== null) this.#compute += usage.compute;
    if (usage.allocate !== null) this.#allocated = usage.allocate;
  }

  async #onHostCall(request: Uint8Array): Promise<Uint8Array> {
    let reply: object;
    try {
      const args = JSON.parse(decoder.decode(request)) as Record<string, unknown>;
      const op = String(args.op);
      // A device running ahead: the models it talks to (the sensor's trajectory) follow its time.
      if (typeof args["@now"] === "number") this.#options.clock.advanceTo?.(args["@now"]);
      const value = await this.#hostCall(op, args);
      reply = op === "delay" ? { ok: true, now: this.#options.clock.now() } : { ok: true, value };
    } catch (error) {
      reply = { ok: false, error: messageOf(error) };
    }
    return encoder.encode(JSON.stringify(reply));
  }

  async #hostCall(op: string, args: Record<string, unknown>): Promise<unknown> {
    switch (op) {
      case "module.load":
        return this.#load(String(args.specifier));
      case "trace":
        this.#firmwareLog(String(args.text));
        return undefined;
      case "meter.native":
        this.#nativeBytes = Number(args.bytes) || 0;
        return undefined;
      case "report": {
        const fields = { device: this.name, err: args.error };
        if (args.level === "error") this.#options.logger.error(fields, String(args.msg));
        else this.#options.logger.warn(fields, String(args.msg));
        return undefined;
      }
      case "delay": {
        // The firmware blocks, but virtual time has to pass for the delay to end.
        const held = this.#release !== undefined;
        this.#releaseClock();
        await this.#options.clock.sleep(Number(args.ms) || 0);
        if (held) this.#holdClock();
        return undefined;
      }
      default: {
        const dot = op.indexOf(".");
        const port = dot > 0 ? this.#options.ports[op.slice(0, dot)] : undefined;
        if (!port) throw new Error(`no simulated peripheral for ${op}`);
        return port.handle(op.slice(dot + 1), args);
      }
    }
  }

  #load(specifier: string): { source: string; host: boolean } {
    if (specifier === RUNTIME_SPECIFIER) return { source: this.#read(this.#options.runtimeFile), host: false };
    const module = this.#options.modules.get(specifier);
    if (!module) throw new Error(`module "${specifier}" not found in the firmware image`);
    return "source" in module ? module : { source: this.#read(module.file), host: module.host };
  }

  #read(file: string): string {
    let source = this.#sources.get(file);
    if (source === undefined) {
      source = readFileSync(file, "utf8");
      this.#sources.set(file, source);
    }
    return source;
  }

  /** Firmware log lines are JSON records (kestrel/log); anything else is passed on as text. */
  #firmwareLog(text: string): void {
    const logger = this.#options.logger;
    let record: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed))
        record = parsed as Record<string, unknown>;
    } catch {
      record = undefined;
    }
    if (!record || typeof record.msg !== "string" || !LOG_LEVELS.has(String(record.level))) {
      logger.info({ device: this.name, trace: text }, "firmware trace");
      return;
    }
    const { level, msg, ts, ...fields } = record;
    const entry = { device: this.name, deviceTs: ts, ...fields };
    if (level === "error") logger.error(entry, msg);
    else if (level === "warn") logger.warn(entry, msg);
    else if (level === "debug") logger.debug?.(entry, msg);
    else logger.info(entry, msg);
  }
}
