// The simulator's notion of time. Devices read it (Date.now, Time.ticks, timers) only through a
// SimClock, so virtual time can run faster than real time (FastClock) or jump from one due timer to
// the next (VirtualClock) without touching them.

export interface SimClock {
  /** Epoch milliseconds. */
  now(): number;
  /** Calls fn once when the clock reaches at (soon, if already past); returns a cancel function. */
  setAlarm(at: number, fn: () => void): () => void;
  /** Resolves once ms have passed on this clock. */
  sleep(ms: number): Promise<void>;
  /**
   * Work in progress that real time must finish before virtual time may move on (a crank, a
   * connect, a publish awaiting its PUBACK); returns its release. Only a VirtualClock waits.
   */
  hold?(): () => void;
  /** The earliest moment anything is due (a VirtualClock lets a device run ahead up to it). */
  horizon?(): number;
  /** A device that ran ahead up to the horizon moves the clock with it. */
  advanceTo?(at: number): void;
}

/** Node timers accept at most 2^31-1 ms; a longer wait re-arms itself. */
const MAX_TIMEOUT = 2_147_483_647;

/** Virtual time equal to real time. */
export class RealTimeClock implements SimClock {
  now(): number {
    return Date.now();
  }

  setAlarm(at: number, fn: () => void): () => void {
    let handle: NodeJS.Timeout;
    const arm = (): void => {
      const wait = at - Date.now();
      handle = setTimeout(wait > MAX_TIMEOUT ? arm : fn, Math.min(Math.max(wait, 0), MAX_TIMEOUT));
    };
    arm();
    return () => clearTimeout(handle);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  }
}

/**
 * Virtual time running `rate` times faster than real time from `start`: ten device minutes pass in
 * ten real seconds at rate 60. Only device time is scaled; sockets and the broker keep real time,
 * so keep-alive and connect timeouts last longer in device time than they would on hardware.
 */
export class FastClock implements SimClock {
  readonly rate: number;
  readonly #start: number;
  readonly #realStart = Date.now();

  constructor(rate: number, start = Date.now()) {
    if (!(rate >= 1)) throw new RangeError(`rate must be >= 1, got ${rate}`);
    this.rate = rate;
    this.#start = start;
  }

  now(): number {
    return this.#start + Math.floor((Date.now() - this.#realStart) * this.rate);
  }

  setAlarm(at: number, fn: () => void): () => void {
    let handle: NodeJS.Timeout;
    const arm = (): void => {
      const wait = Math.ceil((at - this.now()) / this.rate);
      handle = setTimeout(wait > MAX_TIMEOUT ? arm : fn, Math.min(Math.max(wait, 0), MAX_TIMEOUT));
    };
    arm();
    return () => clearTimeout(handle);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.ceil(ms / this.rate))));
  }
}

interface Alarm {
  at: number;
  /** Alarms due at the same moment fire in the order they were set. */
  order: number;
  fn: () => void;
}

/** A release that runs once however often it is called. */
function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/**
 * Discrete-event virtual time: nothing passes by itself. Once no work holds the clock, it jumps to
 * the earliest alarm and fires it; the work that alarm starts (a crank, the publishes it makes)
 * holds the clock in turn. Real time spent by the engine, sockets and broker is invisible to the
 * device, so a run is reproducible, and a day of device time costs only the work done in it.
 *
 * A hold that real time does not release within `holdLimitMs` (a broker that never answers) is
 * dropped with a warning through `onStall`, so one stuck peer cannot freeze every device.
 */
export class VirtualClock implements SimClock {
  readonly #alarms: Alarm[] = [];
  readonly #holds = new Set<() => void>();
  readonly #holdLimitMs: number;
  readonly #onStall: ((heldMs: number) => void) | undefined;
  #now: number;
  #order = 0;
  #advancing = false;

  constructor(options: { start?: number; holdLimitMs?: number; onStall?: (heldMs: number) => void } = {}) {
    this.#now = options.start ?? Date.now();
    this.#holdLimitMs = options.holdLimitMs ?? 10_000;
    this.#onStall = options.onStall;
  }

  now(): number {
    return this.#now;
  }

  setAlarm(at: number, fn: () => void): () => void {
    const alarm: Alarm = { at, order: this.#order++, fn };
    let index = this.#alarms.length;
    while (index > 0 && VirtualClock.#before(alarm, this.#alarms[index - 1] as Alarm)) index--;
    this.#alarms.splice(index, 0, alarm);
    this.#schedule();
    return () => {
      const at = this.#alarms.indexOf(alarm);
      if (at >= 0) this.#alarms.splice(at, 1);
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setAlarm(this.#now + Math.max(0, ms), resolve));
  }

  hold(): () => void {
    const started = Date.now();
    const limit = setTimeout(() => {
      this.#onStall?.(Date.now() - started);
      release();
    }, this.#holdLimitMs);
    const release = once(() => {
      clearTimeout(limit);
      this.#holds.delete(release);
      this.#schedule();
    });
    this.#holds.add(release);
    return release;
  }

  horizon(): number {
    return this.#alarms[0]?.at ?? Number.POSITIVE_INFINITY;
  }

  advanceTo(at: number): void {
    if (at > this.#now) this.#now = at;
  }

  /** Resolves once virtual time reached `at` (alarms up to it fired) and nothing holds the clock. */
  async runUntil(at: number): Promise<void> {
    await this.sleep(at - this.#now);
    while (this.#holds.size > 0) await new Promise((resolve) => setImmediate(resolve));
  }

  static #before(a: Alarm, b: Alarm): boolean {
    return a.at < b.at || (a.at === b.at && a.order < b.order);
  }

  /**
   * Advances on a later turn of the event loop, so I/O already under way (a socket's data, a
   * reply from the engine) takes its holds before the clock looks again.
   */
  #schedule(): void {
    if (this.#advancing) return;
    this.#advancing = true;
    setImmediate(() => {
      this.#advancing = false;
      this.#advance();
    });
  }

  #advance(): void {
    if (this.#holds.size > 0) return;
    const alarm = this.#alarms.shift();
    if (!alarm) return;
    if (alarm.at > this.#now) this.#now = alarm.at;
    alarm.fn();
    this.#schedule();
  }
}
