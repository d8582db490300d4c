// The simulator's notion of time. Devices read it (Date.now, Time.ticks, timers) only through a
// SimClock, so virtual time can run faster than real time (FastClock) without touching them.

export interface SimClock {
  /** Epoch milliseconds. */
  now(): number;
  /** Calls fn once when the clock reaches at (soon, if already past); returns a cancel function. */
  setAlarm(at: number, fn: () => void): () => void;
  /** Resolves once ms have passed on this clock. */
  sleep(ms: number): Promise<void>;
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
