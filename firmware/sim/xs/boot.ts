// The simulator runtime inside the xsnap worker: builds the firmware's compartment (Moddable module
// names mapped to simulated modules, a virtual Date), owns the virtual clock and the timer queue, and
// turns the Node parent's commands (boot, tick, event) into firmware callbacks.

import type { SimEventListener, SimHost, SimTimer } from "kestrel-sim:host";

interface LoadedModule {
  source: string;
  /** Simulated platform modules may import the host; firmware modules may not. */
  host: boolean;
}

type HostReply = { ok: true; value?: unknown; now?: number } | { ok: false; error: string };

/**
 * now: the monotonic clock timers run on; wall: what the device's wall clock is off by (a clock
 * jump); until: how far the device may run ahead on its own (see runDueTimers), now if absent.
 */
type ParentCommand = { now: number; wall?: number; until?: number } & (
  | { t: "boot"; entry: string; seed: number }
  | { t: "tick" }
  | { t: "event"; channel: string; id: number; data: Record<string, unknown> }
);

const HOST_SPECIFIER = "kestrel-sim:host";
/** Timers fired per command at most, so a zero-interval loop cannot starve parent events. */
const MAX_FIRED_PER_COMMAND = 1000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Moddable's XS has String.fromArrayBuffer and ArrayBuffer.fromString (UTF-8); xsnap is built
 * without them (mxCESU8), so the simulator supplies them on the intrinsics the firmware shares.
 */
function installModdableStringBuffers(): void {
  const strings = String as unknown as { fromArrayBuffer?: (buffer: ArrayBufferLike) => string };
  strings.fromArrayBuffer ??= (buffer) => {
    if (!(buffer instanceof ArrayBuffer)) throw new TypeError("argument is no ArrayBuffer instance");
    return decoder.decode(new Uint8Array(buffer));
  };
  const buffers = ArrayBuffer as unknown as { fromString?: (text: string) => ArrayBuffer };
  buffers.fromString ??= (text) => encoder.encode(String(text)).buffer as ArrayBuffer;
}

installModdableStringBuffers();

let now = 0;
let wallOffset = 0;
let until = 0;
/** Set by a host call that reaches beyond the board's own models (network, restart, delay). */
let touchedWorld = false;

/**
 * Host calls answered by the board's own models, which follow the device's time: running ahead
 * through them changes nothing the outside could see. Any other call ends a run-ahead.
 */
const LOCAL_PORTS = [
  "flash.",
  "preference.",
  "i2c.",
  "spi.",
  "pulse.",
  "gpio.",
  "faults.",
  "resource.",
  "instrumentation.",
  "net.",
];
const LOCAL_OPS = new Set(["trace", "report", "module.load", "system.resetReason"]);

function isLocal(op: string): boolean {
  return LOCAL_OPS.has(op) || LOCAL_PORTS.some((prefix) => op.startsWith(prefix));
}

let bootAt = 0;
let traceLine = "";

function call(op: string, args?: Record<string, unknown>): unknown {
  if (!isLocal(op)) touchedWorld = true;
  // "@now": the device's time, ahead of the parent's clock while running ahead.
  const request = encoder.encode(JSON.stringify(args ? { op, "@now": now, ...args } : { op, "@now": now }));
  const reply = JSON.parse(decoder.decode(issueCommand(request.buffer))) as HostReply;
  if (!reply.ok) throw new Error(reply.error);
  if (reply.now !== undefined) now = reply.now;
  return reply.value;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ? `${error.message}\n${error.stack}` : error.message;
  return String(error);
}

function report(level: "warn" | "error", msg: string, error?: unknown): void {
  call("report", error === undefined ? { level, msg } : { level, msg, error: describe(error) });
}

class TimerRecord implements SimTimer {
  readonly brand = "SimTimer" as const;
  readonly callback: (timer: SimTimer) => void;
  due = 0;
  repeat = 0;
  cleared = false;

  constructor(callback: (timer: SimTimer) => void) {
    this.callback = callback;
  }
}

/** Scheduled timers, unordered: a device has a handful, so a linear scan beats keeping a heap. */
const scheduled: TimerRecord[] = [];

function unschedule(timer: TimerRecord): void {
  const index = scheduled.indexOf(timer);
  if (index >= 0) scheduled.splice(index, 1);
}

function asRecord(timer: SimTimer): TimerRecord {
  if (!(timer instanceof TimerRecord)) throw new TypeError("not a timer");
  return timer;
}

function schedule(timer: SimTimer, interval?: number, repeat?: number): void {
  const record = asRecord(timer);
  if (record.cleared) throw new Error("timer already cleared");
  unschedule(record);
  if (interval === undefined) return;
  record.due = now + Math.max(0, Number(interval) || 0);
  record.repeat = Math.max(0, Number(repeat) || 0);
  scheduled.push(record);
}

function earliest(): TimerRecord | undefined {
  let found: TimerRecord | undefined;
  for (const timer of scheduled) if (!found || timer.due < found.due) found = timer;
  return found;
}

/**
 * Fires the timers due now; then, up to `until`, moves the device's time on to the next timer and
 * fires it too, until a host call reached the outside world. On a VirtualClock `until` is the next
 * moment anything else in the simulation is due, so a day of 1 s watchdog ticks costs a few hundred
 * cranks instead of 86,400, with the same result.
 */
function runDueTimers(): void {
  for (let fired = 0; fired < MAX_FIRED_PER_COMMAND; fired++) {
    const timer = earliest();
    if (!timer) return;
    if (timer.due > now) {
      if (touchedWorld || timer.due > until) return;
      now = timer.due;
    }
    if (timer.repeat > 0) timer.due = timer.due + timer.repeat > now ? timer.due + timer.repeat : now + timer.repeat;
    else unschedule(timer);
    try {
      timer.callback(timer);
    } catch (error) {
      report("error", "uncaught exception in a timer callback", error);
    }
  }
}

const listeners = new Map<string, SimEventListener>();

const host: SimHost = {
  call,
  get now() {
    return now;
  },
  get ticks() {
    return now - bootAt;
  },
  timerSet(callback, interval, repeat) {
    if (typeof callback !== "function") throw new TypeError("timer callback must be a function");
    const timer = new TimerRecord(callback);
    schedule(timer, interval, repeat);
    return timer;
  },
  timerSchedule: schedule,
  timerClear(timer) {
    if (!timer) return;
    const record = asRecord(timer);
    record.cleared = true;
    unschedule(record);
  },
  delay(ms) {
    call("delay", { ms: Math.max(0, Number(ms) || 0) });
  },
  listen(channel, id, listener) {
    listeners.set(`${channel}:${id}`, listener);
  },
  unlisten(channel, id) {
    listeners.delete(`${channel}:${id}`);
  },
  report,
};

/** Moddable's trace: arguments concatenated, lines forwarded to the parent as they complete. */
function trace(...parts: unknown[]): void {
  traceLine += parts.join("");
  let newline = traceLine.indexOf("\n");
  while (newline >= 0) {
    call("trace", { text: traceLine.slice(0, newline) });
    traceLine = traceLine.slice(newline + 1);
    newline = traceLine.indexOf("\n");
  }
}

function flushTrace(): void {
  if (traceLine === "") return;
  const text = traceLine;
  traceLine = "";
  call("trace", { text });
}

type DateArguments =
  | []
  | [value: number | string | Date]
  | [year: number, monthIndex: number, date?: number, hours?: number, minutes?: number, seconds?: number, ms?: number];

/** Date on the virtual wall clock: the simulator's time, plus any clock jump injected as a fault. */
class SimDate extends Date {
  constructor(...args: DateArguments) {
    if (args.length === 0) super(now + wallOffset);
    else if (args.length === 1) super(args[0]);
    else super(args[0], args[1], args[2] ?? 1, args[3] ?? 0, args[4] ?? 0, args[5] ?? 0, args[6] ?? 0);
  }

  static override now(): number {
    return now + wallOffset;
  }
}

/**
 * sfc32, as seededRandom in sim/faults.ts (this runtime cannot import the parent's modules): the
 * firmware's Math.random draws from it so a run replays from its seed.
 */
function seededRandom(seed: number): () => number {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

const hostModules = new Set<string>();

function load(specifier: string): LoadedModule {
  return call("module.load", { specifier }) as LoadedModule;
}

/**
 * XS's `native(name)`: on a device xsc turns it into the C function of that name at build time;
 * here the worker hands over the same C functions by name (kestrelNatives).
 */
function native(name: string): unknown {
  const fn = kestrelNatives?.[name];
  if (typeof fn !== "function")
    throw new SyntaxError(`invalid native ${name}: the simulator's XS worker has no such C function`);
  return fn;
}

/**
 * XS's `Native(destructor)`: a base class whose instances are host objects that run the named C
 * destructor when collected. `super()` in a class extending it gets a host object of the subclass.
 */
function Native(destructor: string): new () => object {
  const natives = kestrelNatives;
  if (!natives) throw new SyntaxError(`invalid Native ${destructor}: the simulator's XS worker has no native modules`);
  return function NativeObject(this: unknown): object {
    const instance = natives.hostObject(destructor);
    return Object.setPrototypeOf(instance, new.target.prototype) as object;
  } as unknown as new () => object;
}

function createDeviceCompartment(seed: number): Compartment {
  const math = Object.create(Math, { random: { value: seededRandom(seed) } }) as Math;
  return new Compartment({
    __options__: true,
    globals: { trace, Date: SimDate, Math: math, Native, native },
    resolveHook(specifier, referrer) {
      if (specifier.startsWith("."))
        throw new Error(`${referrer}: relative import "${specifier}"; use the bare names the manifest maps`);
      if (specifier === HOST_SPECIFIER && !hostModules.has(referrer))
        throw new Error(`${referrer}: "${HOST_SPECIFIER}" is reserved to simulated platform modules`);
      return specifier;
    },
    loadNowHook(specifier) {
      if (specifier === HOST_SPECIFIER) return { namespace: { default: host } };
      const loaded = load(specifier);
      if (loaded.host) hostModules.add(specifier);
      return { source: new ModuleSource(loaded.source) };
    },
  });
}

/**
 * Kept, as a device keeps its loaded modules: otherwise a module nothing refers to after boot
 * would be collected, and the heap meters would undercount what the firmware holds.
 */
let deviceCompartment: Compartment | undefined;

function boot(entry: string, seed: number): void {
  bootAt = now;
  deviceCompartment = createDeviceCompartment(seed);
  const main = deviceCompartment.importNow(entry);
  // Moddable calls the main module's default export when it is a function.
  if (typeof main.default === "function") (main.default as () => void)();
}

function dispatch(command: ParentCommand): void {
  now = command.now;
  wallOffset = command.wall ?? 0;
  until = command.until ?? command.now;
  touchedWorld = false;
  switch (command.t) {
    case "boot":
      boot(command.entry, command.seed);
      break;
    case "tick":
      break;
    case "event": {
      const listener = listeners.get(`${command.channel}:${command.id}`);
      if (listener) {
        try {
          listener(command.data);
        } catch (error) {
          report("error", `uncaught exception in a ${command.channel} callback`, error);
        }
      }
      break;
    }
  }
  runDueTimers();
}

/** Entry point for every command from the parent; answers with the next timer due, or a fatal error. */
export function handleCommand(message: ArrayBuffer): ArrayBuffer {
  let reply: { next: number | null; now?: number; fatal?: string };
  try {
    dispatch(JSON.parse(decoder.decode(message)) as ParentCommand);
    reply = { next: earliest()?.due ?? null, now };
  } catch (error) {
    reply = { next: null, fatal: describe(error) };
  }
  try {
    flushTrace();
  } catch (error) {
    reply.fatal ??= describe(error);
  }
  return encoder.encode(JSON.stringify(reply)).buffer;
}
