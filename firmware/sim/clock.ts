// The simulator's notion of time. Devices read it (Date.now, Time.ticks, timers) only through a
// SimClock, so a later clock can run virtual time faster than real time without touching them.

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
